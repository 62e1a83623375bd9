"""The only module that speaks SQL: the ``open_interest`` table and the upsert into it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import (
    Column,
    Date,
    DateTime,
    Engine,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    bindparam,
    create_engine,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import DBAPIError, ProgrammingError

from collector.errors import SinkError
from collector.records import OpenInterest

metadata = MetaData()

open_interest = Table(
    "open_interest",
    metadata,
    Column("symbol", Text, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("underlying", Text, nullable=False),
    Column("expiry", Date, nullable=False),
    Column("strike", Numeric, nullable=False),
    Column("side", Text, nullable=False),
    Column("open_interest", Numeric, nullable=False),
    Column("open_interest_usd", Numeric, nullable=False),
    Column("collected_at", DateTime(timezone=True), nullable=False),
    PrimaryKeyConstraint("symbol", "ts", name="open_interest_pkey"),
)

COLUMNS = tuple(column.name for column in open_interest.columns)

# One statement per batch whatever its size: each column travels as one array parameter (no bind-parameter
# limit, one round trip), and the WHERE makes a re-poll of an unchanged minute write nothing at all.
_UPSERT = text(
    f"""
    INSERT INTO open_interest ({", ".join(COLUMNS)})
    SELECT * FROM unnest({", ".join(f":{name}" for name in COLUMNS)})
    ON CONFLICT (symbol, ts) DO UPDATE SET
        open_interest = excluded.open_interest,
        open_interest_usd = excluded.open_interest_usd,
        collected_at = excluded.collected_at
    WHERE (open_interest.open_interest, open_interest.open_interest_usd)
        IS DISTINCT FROM (excluded.open_interest, excluded.open_interest_usd)
    """
).bindparams(*(bindparam(column.name, type_=ARRAY(column.type)) for column in open_interest.columns))


@dataclass(frozen=True, slots=True)
class WriteResult:
    """How many rows a write inserted or changed, and how many were already stored with the same values."""

    written: int
    unchanged: int


def make_engine(url: str) -> Engine:
    # pool_pre_ping: a database restarted between two cycles costs a reconnect, not a failed cycle.
    return create_engine(url, pool_pre_ping=True, pool_size=2, max_overflow=2)


class PostgresSink:
    """Upserts records into ``open_interest``, one transaction per call."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def write(self, records: Sequence[OpenInterest]) -> WriteResult:
        # ON CONFLICT cannot touch one row twice in a statement: the last copy of a (symbol, ts) wins.
        unique = list({(record.symbol, record.ts): record for record in records}.values())
        if not unique:
            return WriteResult(0, 0)
        columns = {name: [getattr(record, name) for record in unique] for name in COLUMNS}
        try:
            with self.engine.begin() as connection:
                written = connection.execute(_UPSERT, columns).rowcount
        except ProgrammingError as error:
            raise SinkError(f"database refused the upsert: {_first_line(error)}") from error
        except DBAPIError as error:
            raise SinkError(f"database unreachable or failing: {_first_line(error)}") from error
        return WriteResult(written, len(unique) - written)


def _first_line(error: DBAPIError) -> str:
    message = str(error.orig) if error.orig is not None else str(error)
    lines = message.strip().splitlines()
    return lines[0] if lines else type(error).__name__
