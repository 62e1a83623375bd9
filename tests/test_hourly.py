"""open_interest_hourly on real rows: a plain view on the test server, a continuous aggregate on TimescaleDB.

The same assertions run on both, so a query written against one works on the other. The TimescaleDB case (and
its policies) runs where TEST_TIMESCALEDB_URL names a server with the extension.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from collector.config import DatabaseSettings, Settings
from collector.migrate import migrate
from collector.records import Batch, OpenInterest
from collector.sink import timescale
from collector.sink.postgres import PostgresSink, make_engine
from tests.conftest import needs_timescaledb

COLUMNS = ["hour", "venue", "symbol", "underlying", "expiry", "strike", "side", "open_interest"]
COLUMNS += ["open_interest_usd", "underlying_price", "snapshot"]
H10 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC)
EXPIRY = date(2026, 12, 25)


def row(symbol: str, ts: datetime, oi: str) -> OpenInterest:
    strike, side = Decimal(symbol.split("-")[2]), "call" if symbol.endswith("C") else "put"
    usd = Decimal(oi) * 100
    return OpenInterest("binance", symbol, ts, "BTC", EXPIRY, strike, side, Decimal(oi), usd, None, ts)  # type: ignore[arg-type]


CALL, PUT = "BTC-261225-100000-C", "BTC-261225-100000-P"
ROWS = [
    row(CALL, H10 + timedelta(minutes=5), "1"),
    row(CALL, H10 + timedelta(minutes=59), "2"),  # the last of 10:00 for the call
    row(PUT, H10 + timedelta(minutes=30), "7"),
    row(CALL, H10 + timedelta(hours=1), "3"),  # 11:00 exactly opens the next hour
]
EXPECTED = [
    (H10, CALL, Decimal(2), H10 + timedelta(minutes=59)),
    (H10, PUT, Decimal(7), H10 + timedelta(minutes=30)),
    (H10 + timedelta(hours=1), CALL, Decimal(3), H10 + timedelta(hours=1)),
]


@pytest.fixture(params=["test server", pytest.param("timescaledb", marks=needs_timescaledb)])
def hourly_engine(request: pytest.FixtureRequest) -> Iterator[Engine]:
    """A migrated database: the suite's test server, or a TimescaleDB one (continuous aggregate)."""
    if request.param == "timescaledb":
        url = request.getfixturevalue("timescaledb_url")
        migrate(Settings(database=DatabaseSettings(url=url, timescaledb="require")))
        engine = make_engine(url)
    else:
        engine = request.getfixturevalue("engine")
    yield engine
    engine.dispose()


def hours(engine: Engine) -> list[tuple]:
    sql = "SELECT hour, symbol, open_interest, snapshot FROM open_interest_hourly ORDER BY hour, symbol"
    with engine.connect() as connection:
        return [tuple(r) for r in connection.execute(text(sql))]


def refresh(engine: Engine) -> None:
    """Materialise the aggregate up to now, as its policy does every 30 minutes (a plain view has nothing to
    materialise)."""
    with engine.connect() as connection:
        aggregate = timescale.is_continuous_aggregate(connection, "open_interest_hourly")
    if aggregate:  # a procedure that refuses to run inside a transaction
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text("CALL refresh_continuous_aggregate('open_interest_hourly', NULL, NULL)"))


def test_hourly_has_the_same_columns_on_both(hourly_engine: Engine) -> None:
    with hourly_engine.connect() as connection:
        columns = connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'open_interest_hourly' ORDER BY ordinal_position"
            )
        ).scalars()
        assert list(columns) == COLUMNS


def test_hourly_keeps_each_symbols_last_snapshot_of_every_hour(hourly_engine: Engine) -> None:
    PostgresSink(hourly_engine).write(Batch([], ROWS))
    assert hours(hourly_engine) == EXPECTED  # before any refresh: real time on TimescaleDB
    refresh(hourly_engine)
    assert hours(hourly_engine) == EXPECTED


def test_a_late_row_reaches_its_hour_once_refreshed(hourly_engine: Engine) -> None:
    """A spool written after an outage brings rows for hours that may already be materialised."""
    sink = PostgresSink(hourly_engine)
    sink.write(Batch([], ROWS))
    refresh(hourly_engine)
    late = row(PUT, H10 + timedelta(minutes=45), "8")
    sink.write(Batch([], [late]))
    refresh(hourly_engine)
    assert (H10, PUT, Decimal(8), late.ts) in hours(hourly_engine)


def test_hours_are_utc_hours_whatever_the_session_time_zone(hourly_engine: Engine) -> None:
    PostgresSink(hourly_engine).write(Batch([], ROWS))
    with hourly_engine.connect() as connection:
        connection.execute(text("SET TimeZone = 'Asia/Kolkata'"))  # UTC+05:30: date_trunc would cut at :30
        buckets = connection.execute(text("SELECT DISTINCT hour FROM open_interest_hourly ORDER BY 1"))
        assert list(buckets.scalars()) == [H10, H10 + timedelta(hours=1)]


def test_retention_without_timescaledb_is_refused_out_loud(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(database_url)
    with engine.connect() as connection:
        plain = not timescale.is_hypertable(connection, "open_interest")
    engine.dispose()
    if not plain:
        pytest.skip("the test server gives us TimescaleDB; this test needs a plain table")
    settings = Settings(database=DatabaseSettings(url=database_url, drop_raw_after_days=30))
    with caplog.at_level(logging.WARNING, logger="collector.migrate"):
        migrate(settings)
    assert "drop_raw_after_days is 30, but open_interest is a plain PostgreSQL table" in caplog.text


# TimescaleDB only: the policies.


def jobs(engine: Engine) -> dict[str, dict]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT proc_name, config FROM timescaledb_information.jobs"
                " WHERE proc_name IN ('policy_refresh_continuous_aggregate', 'policy_retention')"
            )
        )
        return {name: config for name, config in rows}


def migrate_with(url: str, drop_raw_after_days: float | None) -> None:
    database = DatabaseSettings(url=url, timescaledb="require", drop_raw_after_days=drop_raw_after_days)
    migrate(Settings(database=database))


@needs_timescaledb
def test_refresh_and_retention_policies_follow_the_configuration(timescaledb_url: str) -> None:
    engine = make_engine(timescaledb_url)
    migrate_with(timescaledb_url, None)
    policies = jobs(engine)
    assert set(policies) == {"policy_refresh_continuous_aggregate"}  # raw rows are kept: no retention
    refresh_policy = policies["policy_refresh_continuous_aggregate"]
    assert (refresh_policy["start_offset"], refresh_policy["end_offset"]) == (None, "00:10:00")

    migrate_with(timescaledb_url, 90)
    policies = jobs(engine)
    assert policies["policy_retention"]["drop_after"] == "90 days"
    assert policies["policy_refresh_continuous_aggregate"]["start_offset"] == "89 days"

    migrate_with(timescaledb_url, None)
    assert set(jobs(engine)) == {"policy_refresh_continuous_aggregate"}
    engine.dispose()


@needs_timescaledb
def test_dropped_raw_rows_keep_their_hours_in_the_aggregate(timescaledb_url: str) -> None:
    """The point of pairing the two policies: minutes go after N days, their hours stay."""
    migrate_with(timescaledb_url, 30)
    engine = make_engine(timescaledb_url)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    old, recent = now - timedelta(days=40), now - timedelta(days=2)
    PostgresSink(engine).write(Batch([], [row(CALL, old, "1"), row(CALL, recent, "2")]))
    refresh(engine)

    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        for proc in ("policy_retention", "policy_refresh_continuous_aggregate"):  # as the scheduler would
            query = text("SELECT job_id FROM timescaledb_information.jobs WHERE proc_name = :proc")
            job = connection.execute(query, {"proc": proc}).scalar_one()
            connection.execute(text("CALL run_job(:job)"), {"job": job})
        raw = connection.execute(text("SELECT ts FROM open_interest")).scalars()
        assert list(raw) == [recent]
    assert [(hour, oi) for hour, _, oi, _ in hours(engine)] == [(old, Decimal(1)), (recent, Decimal(2))]
    engine.dispose()
