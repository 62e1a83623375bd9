"""The only module that speaks SQL: the tables, the upsert into them, and the reads people run."""

from __future__ import annotations

import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import psycopg
from sqlalchemy import (
    Column,
    Connection,
    Date,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    TextClause,
    bindparam,
    create_engine,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, SQLAlchemyError, StatementError

from collector.config import VENUES
from collector.errors import DatabaseAway, RowsRefused, SinkError
from collector.records import Batch, OpenInterest, PairRun, RejectedRow, clean_text

metadata = MetaData()

open_interest = Table(
    "open_interest",
    metadata,
    Column("venue", Text, nullable=False),
    Column("symbol", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("underlying", Text, nullable=False),
    Column("expiry", Date, nullable=False),
    Column("strike", Numeric, nullable=False),
    Column("side", Text, nullable=False),
    Column("open_interest", Numeric, nullable=False),
    Column("open_interest_usd", Numeric),
    Column("underlying_price", Numeric),
    Column("collected_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("venue", "symbol", "ts", name="open_interest_pkey"),
)

collection_runs = Table(
    "collection_runs",
    metadata,
    Column("cycle_start", DateTime(timezone=True), nullable=False),
    Column("venue", Text, nullable=False),
    Column("scope", Text, nullable=False),
    Column("underlying", Text),
    Column("expiry", Date),
    Column("status", Text, nullable=False),
    Column("snapshot_ts", DateTime(timezone=True)),
    Column("rows_stored", Integer, nullable=False),
    Column("rows_rejected", Integer, nullable=False),
    Column("http_status", Integer),
    Column("error_code", Integer),
    Column("error_message", Text),
    Column("duration_ms", Integer, nullable=False),
    PrimaryKeyConstraint("cycle_start", "venue", "scope", name="collection_runs_pkey"),
)


rejected_rows = Table(
    "rejected_rows",
    metadata,
    Column("cycle_start", DateTime(timezone=True), nullable=False),
    Column("venue", Text),
    Column("underlying", Text),
    Column("expiry", Date),
    Column("stage", Text, nullable=False),
    Column("ordinal", Integer, nullable=False),
    Column("symbol", Text),
    Column("field", Text, nullable=False),
    Column("reason", Text, nullable=False),
)


def _insert_from_arrays(table: Table, conflict: str) -> TextClause:
    """INSERT … SELECT FROM unnest(one array per column): one statement and one round trip per batch,
    whatever its size, with no bind-parameter limit to chunk around."""
    names = [column.name for column in table.columns]
    return text(
        f"INSERT INTO {table.name} ({', '.join(names)})"
        f" SELECT * FROM unnest({', '.join(f':{name}' for name in names)}) {conflict}"
    ).bindparams(*(bindparam(column.name, type_=ARRAY(column.type)) for column in table.columns))


# Rows travel by binary COPY into a session-local staging table, then one INSERT … SELECT upserts them: COPY
# is the cheapest way in, and the WHERE makes a re-poll of an unchanged minute write nothing at all. The
# staging table is made from our own column list, and every statement names its columns: a table whose
# columns were dropped and re-added (in another order) takes the next write without a restart.
_COLUMN_NAMES = [column.name for column in open_interest.columns]
_COPY_TYPES = [
    "text", "text", "timestamptz", "text", "date", "numeric", "text", "numeric", "numeric", "numeric",
    "timestamptz",
]  # fmt: skip
_COLUMNS = ", ".join(_COLUMN_NAMES)
_STAGE = text(
    "CREATE TEMP TABLE IF NOT EXISTS open_interest_incoming"
    f" ({', '.join(f'{name} {kind}' for name, kind in zip(_COLUMN_NAMES, _COPY_TYPES, strict=True))})"
    " ON COMMIT DELETE ROWS"
)
_COPY_STAGED = f"COPY open_interest_incoming ({_COLUMNS}) FROM STDIN"
# A record's columns in table order (dataclasses.astuple would deep-copy every value).
_row_values = operator.attrgetter(*_COLUMN_NAMES)
_UPSERT_STAGED = text(
    f"""
    INSERT INTO open_interest ({_COLUMNS}) SELECT {_COLUMNS} FROM open_interest_incoming
    ORDER BY venue, symbol, ts
    ON CONFLICT (venue, symbol, ts) DO UPDATE SET
        open_interest = excluded.open_interest,
        open_interest_usd = excluded.open_interest_usd,
        underlying_price = excluded.underlying_price,
        collected_at = excluded.collected_at
    WHERE (open_interest.open_interest, open_interest.open_interest_usd, open_interest.underlying_price)
        IS DISTINCT FROM (excluded.open_interest, excluded.open_interest_usd, excluded.underlying_price)
    """
)
_INSERT_RUNS = _insert_from_arrays(collection_runs, "ON CONFLICT DO NOTHING")
_INSERT_REJECTED = _insert_from_arrays(rejected_rows, "ON CONFLICT DO NOTHING")
# SQLSTATE classes of a refusal for what a batch holds (22 data exception, 23 integrity constraint); any
# other failure (connection, schema, disk, locks) is the database being away, and retrying the batch is right.
_CONTENT_CLASSES = ("22", "23")


@dataclass(frozen=True, slots=True)
class WriteResult:
    """How many rows a write inserted or changed, and how many were already stored with the same values."""

    written: int
    unchanged: int


def make_engine(url: str) -> Engine:
    # pool_pre_ping: a database restarted between two cycles costs a reconnect, not a failed cycle.
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


class PostgresSink:
    """Writes a batch (rows and their journal) in one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, batch: Batch, *, replayed: bool = False) -> WriteResult:
        """Upsert the rows and journal the runs and rejections, in one transaction; ``replayed`` marks a batch
        that waited in the spool. RowsRefused when the database refuses what the batch holds, DatabaseAway
        when it cannot take anything."""
        # ON CONFLICT cannot touch one row twice in a statement: the last copy of a (venue, symbol, ts) wins.
        # The upsert goes in key order, so two collectors writing one minute cannot deadlock.
        unique = list({(r.venue, r.symbol, r.ts): r for r in batch.records}.values())
        runs = [_as_spooled(run) for run in batch.runs] if replayed else batch.runs
        try:
            with self.engine.begin() as connection:
                written = _upsert(connection, unique) if unique else 0
                if runs:
                    connection.execute(_INSERT_RUNS, _columns(runs))
                if batch.rejections:
                    connection.execute(_INSERT_REJECTED, _columns(batch.rejections))
        except Exception as error:
            if _is_content(error):
                raise RowsRefused(f"database refused the rows: {_first_line(error)}") from error
            raise DatabaseAway(f"database unreachable or failing: {_first_line(error)}") from error
        return WriteResult(written, len(unique) - written)


@dataclass(frozen=True, slots=True)
class Gap:
    """Minutes from ``gap_start`` to ``gap_end`` (inclusive) with no stored snapshot of one scope of a
    venue (a Binance pair, a Deribit currency, ...)."""

    venue: str
    scope: str
    underlying: str | None
    expiry: date | None
    gap_start: datetime
    gap_end: datetime
    minutes_missing: int


def coverage_gaps(engine: Engine, since: timedelta) -> list[Gap]:
    """What the ``coverage_gaps`` view says, for the last ``since``."""
    query = text("SELECT * FROM coverage_gaps_since(now() - CAST(:since AS interval))")
    with _reading(engine) as connection:
        return [Gap(*row) for row in connection.execute(query, {"since": since})]


@dataclass(frozen=True, slots=True)
class StrikeBook:
    """One expiry's open interest by strike in the book at a time (``oi_book``): strikes ascending, and per
    venue its calls and puts at each strike (0 where it lists none); ``venue`` None for every venue."""

    underlying: str
    expiry: date
    venue: str | None
    snapshot: datetime  # the newest row of the book
    strikes: tuple[Decimal, ...]
    calls: dict[str, tuple[Decimal, ...]]
    puts: dict[str, tuple[Decimal, ...]]
    max_pain: Decimal | None  # the lowest strike when several tie

    @property
    def total_calls(self) -> Decimal:
        return sum((sum(values, Decimal(0)) for values in self.calls.values()), Decimal(0))

    @property
    def total_puts(self) -> Decimal:
        return sum((sum(values, Decimal(0)) for values in self.puts.values()), Decimal(0))


# The nearest expiry among the rows of the book window before ``at`` (the BRIN index on ts finds them).
_NEAREST_EXPIRY = text(
    "SELECT min(expiry) FROM open_interest WHERE underlying = :underlying"
    " AND ts <= :at AND ts > CAST(:at AS timestamptz) - INTERVAL '15 minutes'"
    " AND (CAST(:venue AS text) IS NULL OR venue = :venue)"
)


def nearest_expiry(engine: Engine, underlying: str, at: datetime, venue: str | None = None) -> date | None:
    """The nearest expiry of ``underlying`` in the book at ``at`` (of one venue or all); None without one."""
    with _reading(engine) as connection:
        expiry: date | None = connection.execute(
            _NEAREST_EXPIRY, {"underlying": underlying, "at": at, "venue": venue}
        ).scalar()
    return expiry


_STRIKE_BOOK = text(
    """
    SELECT venue, strike, max(ts) AS ts,
           coalesce(sum(open_interest) FILTER (WHERE side = 'call'), 0) AS calls,
           coalesce(sum(open_interest) FILTER (WHERE side = 'put'), 0) AS puts
    FROM oi_book(:underlying, :expiry, :at, :venue)
    GROUP BY venue, strike
    ORDER BY strike, venue
    """
)
_MAX_PAIN = text("SELECT min(strike) FROM oi_max_pain(:underlying, :expiry, :at, :venue)")


def strike_book(
    engine: Engine, underlying: str, expiry: date, at: datetime, venue: str | None = None
) -> StrikeBook | None:
    """The book of ``underlying`` ``expiry`` at ``at`` (of one venue, or of all); None when nothing is
    stored at or before ``at``."""
    params = {"underlying": underlying, "expiry": expiry, "at": at, "venue": venue}
    with _reading(engine) as connection:
        rows = connection.execute(_STRIKE_BOOK, params).all()
        if not rows:
            return None
        max_pain = connection.execute(_MAX_PAIN, params).scalar()
    strikes = tuple(sorted({row.strike for row in rows}))
    venues = sorted({row.venue for row in rows})
    calls = {name: [Decimal(0)] * len(strikes) for name in venues}
    puts = {name: [Decimal(0)] * len(strikes) for name in venues}
    position = {strike: index for index, strike in enumerate(strikes)}
    for row in rows:
        calls[row.venue][position[row.strike]] = row.calls
        puts[row.venue][position[row.strike]] = row.puts
    return StrikeBook(
        underlying,
        expiry,
        venue,
        max(row.ts for row in rows),
        strikes,
        {name: tuple(values) for name, values in calls.items()},
        {name: tuple(values) for name, values in puts.items()},
        max_pain,
    )


# venue = ANY(every venue) rather than no condition: the primary key (venue, symbol, ts) serves it then.
_HISTORY = text(
    "SELECT venue, ts, open_interest FROM open_interest"
    " WHERE venue = ANY(:venues) AND symbol = :symbol"
    " AND ts >= coalesce(CAST(:since AS timestamptz), '-infinity') ORDER BY venue, ts"
)


def symbol_history(
    engine: Engine, symbol: str, since: datetime | None, venue: str | None = None
) -> dict[str, list[tuple[datetime, Decimal]]]:
    """Every stored (ts, open interest) of ``symbol``, oldest first, per venue that lists it (or of one);
    from ``since`` when it is given."""
    history: dict[str, list[tuple[datetime, Decimal]]] = {}
    with _reading(engine) as connection:
        venues = list(VENUES) if venue is None else [venue]
        for row in connection.execute(_HISTORY, {"symbol": symbol, "since": since, "venues": venues}):
            history.setdefault(row.venue, []).append((row.ts, row.open_interest))
    return history


@contextmanager
def _reading(engine: Engine) -> Iterator[Connection]:
    """A connection for a read; a database that is down or refuses it is a SinkError, as for writes."""
    try:
        with engine.connect() as connection:
            yield connection
    except DBAPIError as error:
        raise SinkError(
            f"database read failed on {engine.url.render_as_string()}: {_first_line(error)}"
        ) from error


def _upsert(connection: Connection, records: Sequence[OpenInterest]) -> int:
    connection.execute(_STAGE)
    driver = connection.connection.driver_connection
    assert driver is not None
    with driver.cursor() as cursor, cursor.copy(_COPY_STAGED + " (FORMAT BINARY)") as copy:
        copy.set_types(_COPY_TYPES)
        for record in records:
            copy.write_row(_row_values(record))
    return connection.execute(_UPSERT_STAGED).rowcount


def _is_content(error: Exception) -> bool:
    """Whether a write failed for what it holds, rather than for the database being away: a data or
    constraint error (see _CONTENT_CLASSES), or a value the driver cannot even send."""
    cause = error.orig if isinstance(error, DBAPIError) else error
    if isinstance(cause, psycopg.Error):  # through SQLAlchemy, or straight from the COPY on the raw cursor
        if cause.sqlstate:
            return cause.sqlstate[:2] in _CONTENT_CLASSES
        # psycopg's own classes for what it refuses before sending (a NUL in text, say)
        return isinstance(cause, psycopg.DataError | psycopg.IntegrityError)
    if isinstance(error, SQLAlchemyError):  # binding a value failed (StatementError), or the pool is out
        return isinstance(error, StatementError)
    return True  # raised by the driver's encoding of a value: text UTF-8 cannot hold, an int too large


def _columns(
    rows: Sequence[OpenInterest] | Sequence[PairRun] | Sequence[RejectedRow],
) -> dict[str, list[object]]:
    return {field.name: [getattr(row, field.name) for row in rows] for field in fields(rows[0])}


def _as_spooled(run: PairRun) -> PairRun:
    return replace(run, status="spooled") if run.status in ("ok", "partial") else run


def _first_line(error: Exception) -> str:
    cause = error.orig if isinstance(error, DBAPIError) else error
    message = str(cause) if cause is not None else str(error)
    lines = message.strip().splitlines()
    return clean_text(lines[0], 300) if lines else type(error).__name__
