"""Migrations on a real PostgreSQL without TimescaleDB; the TimescaleDB path where TEST_TIMESCALEDB_URL is."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from collector.config import DatabaseSettings, Settings
from collector.errors import SchemaError
from collector.migrate import MIGRATIONS_DIR, migrate
from collector.records import Batch, OpenInterest
from collector.sink import timescale
from collector.sink.postgres import PostgresSink, make_engine
from tests.conftest import needs_timescaledb

HEAD = sorted(path.name[:4] for path in (MIGRATIONS_DIR / "versions").glob("0*.py"))[-1]


def settings_for(url: str, mode: str = "auto") -> Settings:
    return Settings(database=DatabaseSettings(url=url, timescaledb=mode))  # type: ignore[arg-type]


def test_migrate_creates_the_documented_table(empty_database_url: str) -> None:
    migrate(settings_for(empty_database_url))
    engine = make_engine(empty_database_url)
    inspector = inspect(engine)
    columns = {column["name"]: str(column["type"]) for column in inspector.get_columns("open_interest")}
    assert columns == {
        "venue": "TEXT",
        "symbol": "TEXT",
        "ts": "TIMESTAMP",
        "underlying": "TEXT",
        "expiry": "DATE",
        "strike": "NUMERIC",
        "side": "TEXT",
        "open_interest": "NUMERIC",
        "open_interest_usd": "NUMERIC",
        "underlying_price": "NUMERIC",
        "collected_at": "TIMESTAMP",
    }
    with engine.connect() as connection:
        tz_columns = connection.execute(
            text(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'open_interest'"
                " AND data_type = 'timestamp with time zone' ORDER BY 1"
            )
        ).scalars()
        assert list(tz_columns) == ["collected_at", "ts"]
    assert inspector.get_pk_constraint("open_interest")["constrained_columns"] == ["venue", "symbol", "ts"]
    assert sorted(index["name"] for index in inspector.get_indexes("open_interest")) == [
        "open_interest_ts_brin",
        "open_interest_underlying_expiry_ts",
    ]
    engine.dispose()


def test_migrate_is_safe_to_run_again(empty_database_url: str) -> None:
    migrate(settings_for(empty_database_url))
    migrate(settings_for(empty_database_url))
    engine = make_engine(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    engine.dispose()


def test_two_collectors_migrating_at_once_both_succeed(empty_database_url: str) -> None:
    env = {**cli_env_without_oi(), "OI_DATABASE_URL": empty_database_url}
    command = [str(Path(sys.executable).parent / "oi-collector"), "migrate"]
    runs = [subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=60), run.communicate()[1]) for run in runs]
    assert [code for code, _ in results] == [0, 0], results
    engine = make_engine(empty_database_url)
    with engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [HEAD]
    engine.dispose()


def cli_env_without_oi() -> dict[str, str]:
    return {name: value for name, value in os.environ.items() if not name.startswith("OI_")}


@pytest.fixture
def server_without_timescaledb(empty_database_url: str) -> str:
    """This test's database, on a server that cannot give us TimescaleDB (else the test is skipped)."""
    engine = make_engine(empty_database_url)
    with engine.connect() as connection:
        support = timescale.detect(connection)
    engine.dispose()
    if support.usable:
        pytest.skip(f"the test server can use TimescaleDB ({support.reason}); this test needs one without")
    return empty_database_url


def test_auto_without_timescaledb_leaves_a_plain_table_and_says_why(
    server_without_timescaledb: str, caplog: pytest.LogCaptureFixture
) -> None:
    empty_database_url = server_without_timescaledb
    with caplog.at_level(logging.WARNING, logger="collector.migrate"):
        migrate(settings_for(empty_database_url, "auto"))
    [line] = [r.getMessage() for r in caplog.records if r.name == "collector.migrate"]
    assert line.startswith("open_interest stays a plain PostgreSQL table: ")
    assert "timescaledb" in line


def test_require_without_timescaledb_fails_clearly_and_creates_nothing(
    server_without_timescaledb: str,
) -> None:
    empty_database_url = server_without_timescaledb
    with pytest.raises(SchemaError, match=r'timescaledb = "require", but .*timescaledb'):
        migrate(settings_for(empty_database_url, "require"))
    engine = make_engine(empty_database_url)
    assert not inspect(engine).has_table("open_interest")
    engine.dispose()


def test_off_never_touches_the_extension(empty_database_url: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="collector.migrate"):
        migrate(settings_for(empty_database_url, "off"))
    assert any('timescaledb = "off"' in r.getMessage() for r in caplog.records)


# The TimescaleDB path: only where a real server with the extension is named.


@needs_timescaledb
@pytest.mark.parametrize("mode", ["auto", "require"])
def test_timescaledb_makes_open_interest_a_hypertable(timescaledb_url: str, mode: str) -> None:
    migrate(settings_for(timescaledb_url, mode))
    migrate(settings_for(timescaledb_url, mode))
    engine = make_engine(timescaledb_url)
    with engine.connect() as connection:
        dimension = connection.execute(
            text(
                "SELECT column_name, time_interval FROM timescaledb_information.dimensions"
                " WHERE hypertable_name = 'open_interest'"
            )
        ).one()
    engine.dispose()
    assert dimension.column_name == "ts"
    assert str(dimension.time_interval) == "1 day, 0:00:00"


@needs_timescaledb
def test_timescaledb_off_leaves_a_plain_table(timescaledb_url: str) -> None:
    migrate(settings_for(timescaledb_url, "off"))
    engine = make_engine(timescaledb_url)
    with engine.connect() as connection:
        created = connection.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")).first()
    engine.dispose()
    assert created is None


@needs_timescaledb
def test_timescaledb_columnstore_policy_follows_the_configuration(timescaledb_url: str) -> None:
    for days in (3.0, 5.0):
        settings = settings_for(timescaledb_url, "require")
        migrate(replace(settings, database=replace(settings.database, compress_after_days=days)))
        engine = make_engine(timescaledb_url)
        with engine.connect() as connection:
            configs = connection.execute(
                text(
                    "SELECT config ->> 'compress_after' FROM timescaledb_information.jobs"
                    " WHERE hypertable_name = 'open_interest' AND proc_name = 'policy_compression'"
                )
            ).scalars()
            assert list(configs) == [f"{days:g} days"]
            segmentby = connection.execute(
                text(
                    "SELECT attname FROM timescaledb_information.compression_settings"
                    " WHERE hypertable_name = 'open_interest' AND segmentby_column_index IS NOT NULL"
                )
            ).scalars()
            assert list(segmentby) == ["venue", "symbol"]
        engine.dispose()


@needs_timescaledb
def test_upserts_reach_rows_in_compressed_chunks(timescaledb_url: str) -> None:
    migrate(settings_for(timescaledb_url, "require"))
    engine = make_engine(timescaledb_url)
    sink = PostgresSink(engine)
    old = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    row = OpenInterest("binance", "BTC-260327-100000-C", old, "BTC", date(2026, 3, 27), Decimal(100000),
                       "call", Decimal("4.01"), Decimal("1.5"), None, old)  # fmt: skip
    sink.write(Batch([], [row]))
    with engine.begin() as connection:
        connection.execute(text("SELECT compress_chunk(c) FROM show_chunks('open_interest') AS c"))
    assert sink.write(Batch([], [row])).written == 0
    assert sink.write(Batch([], [replace(row, open_interest=Decimal("5"))])).written == 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT open_interest FROM open_interest")).scalar() == Decimal("5")
    engine.dispose()


# 0007: every venue in one table. Rows written before it are Binance's and stay, in the columnstore too.

OLD_ROWS = """
INSERT INTO open_interest (symbol, ts, underlying, expiry, strike, side, open_interest, open_interest_usd,
                           collected_at)
SELECT 'BTC-260327-' || (90000 + 1000 * (n % 20)) || '-C',
       TIMESTAMPTZ '2026-01-05 00:00+00' + n * INTERVAL '1 min', 'BTC', DATE '2026-03-27',
       90000 + 1000 * (n % 20), 'call', n / 100.0, n * 1.5, now()
FROM generate_series(1, 3000) AS n
"""
FINGERPRINT = (
    "SELECT md5(string_agg(symbol || ts || open_interest, ',' ORDER BY symbol, ts)) FROM open_interest"
)
OLD_RUN = """
INSERT INTO collection_runs VALUES (TIMESTAMPTZ '2026-01-05 00:00:10+00', 'BTC', DATE '2026-03-27', 'ok',
                                    TIMESTAMPTZ '2026-01-05 00:00+00', 20, 0, NULL, NULL, NULL, 31)
"""


def _keeps_every_row(url: str, mode: str, compress: bool) -> None:
    migrate(settings_for(url, mode), "0006")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(OLD_ROWS))
        connection.execute(text(OLD_RUN))
        if compress:
            connection.execute(text("SELECT compress_chunk(c) FROM show_chunks('open_interest') AS c"))
        before = connection.execute(text(FINGERPRINT)).scalar()
    migrate(settings_for(url, mode))
    with engine.begin() as connection:
        after = connection.execute(text(FINGERPRINT)).scalar()
        venues = connection.execute(text("SELECT venue, count(*) FROM open_interest GROUP BY 1")).all()
        run = connection.execute(text("SELECT venue, scope, underlying, expiry FROM collection_runs")).one()
    assert after == before and [tuple(row) for row in venues] == [("binance", 3000)]
    assert tuple(run) == ("binance", "BTC 260327", "BTC", date(2026, 3, 27))
    # the new key takes a second venue's row of the same symbol and minute beside the old one
    sink = PostgresSink(engine)
    ts = datetime(2026, 1, 5, 0, 1, tzinfo=UTC)
    twin = OpenInterest("deribit", "BTC-260327-91000-C", ts, "BTC", date(2026, 3, 27), Decimal(91000), "call",
                        Decimal("7.25"), None, Decimal("97000.123456789012345"), ts)  # fmt: skip
    assert sink.write(Batch([], [twin])).written == 1
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT venue, open_interest, underlying_price FROM open_interest"
                                       " WHERE symbol = 'BTC-260327-91000-C' AND ts = :ts ORDER BY venue"),
                                  {"ts": ts}).all()  # fmt: skip
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("binance", Decimal("0.01"), None),
        ("deribit", Decimal("7.25"), Decimal("97000.123456789012345")),
    ]


def test_0007_keeps_every_row_as_binance_on_plain_postgresql(empty_database_url: str) -> None:
    _keeps_every_row(empty_database_url, "off", compress=False)


@needs_timescaledb
def test_0007_keeps_every_row_as_binance_with_chunks_in_the_columnstore(timescaledb_url: str) -> None:
    _keeps_every_row(timescaledb_url, "require", compress=True)
