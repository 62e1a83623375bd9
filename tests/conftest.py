"""Shared fixtures: a real PostgreSQL (one database per test, cloned from a migrated template) and a real
fake exchange on 127.0.0.1."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from collector.config import (
    BinanceSettings,
    CollectSettings,
    DatabaseSettings,
    ExchangeSettings,
    Settings,
    SpoolSettings,
    VenuesSettings,
)
from collector.migrate import migrate
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.fake_exchange import OPEN_INTEREST, FakeExchange
from tests.pg_server import NoPostgres, throwaway_server

REPO = Path(__file__).resolve().parent.parent
_database_numbers = itertools.count()


def _plain(url: str) -> str:
    """The libpq form of a SQLAlchemy URL, for psycopg.connect."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    """A server the tests may create databases on: TEST_DATABASE_URL, else a throwaway one of our own."""
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield make_url(url).set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
        return
    try:
        with throwaway_server() as url:
            yield url
    except NoPostgres as error:
        pytest.exit(str(error), returncode=3)


def admin_execute(admin_url: str, *statements: str) -> None:
    with psycopg.connect(_plain(admin_url), autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement)


@pytest.fixture(scope="session")
def template_database(pg_admin_url: str) -> Iterator[str]:
    """A database migrated to head once per session; each test clones it."""
    name = f"oi_template_{os.getpid()}"
    admin_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name}", f"CREATE DATABASE {name}")
    migrate(Settings(database=DatabaseSettings(url=_with_database(pg_admin_url, name), timescaledb="auto")))
    # TimescaleDB's scheduler keeps a session on every database with the extension, and CREATE DATABASE
    # ... TEMPLATE refuses a template in use: closing the template to connections sends it away.
    admin_execute(
        pg_admin_url,
        f"ALTER DATABASE {name} WITH IS_TEMPLATE true ALLOW_CONNECTIONS false",
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'",
    )
    yield name
    admin_execute(
        pg_admin_url,
        f"ALTER DATABASE {name} WITH IS_TEMPLATE false",
        f"DROP DATABASE IF EXISTS {name} WITH (FORCE)",
    )


@pytest.fixture
def empty_database_url(pg_admin_url: str) -> Iterator[str]:
    """A new, empty database (for migration tests); dropped afterwards."""
    name = f"oi_test_{os.getpid()}_{next(_database_numbers)}"
    admin_execute(pg_admin_url, f"CREATE DATABASE {name}")
    yield _with_database(pg_admin_url, name)
    admin_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def database_url(pg_admin_url: str, template_database: str) -> Iterator[str]:
    """A migrated database of this test's own; dropped afterwards."""
    name = f"oi_test_{os.getpid()}_{next(_database_numbers)}"
    admin_execute(pg_admin_url, f"CREATE DATABASE {name} TEMPLATE {template_database}")
    yield _with_database(pg_admin_url, name)
    admin_execute(pg_admin_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sink(engine: Engine) -> PostgresSink:
    return PostgresSink(engine)


@pytest.fixture
def fake() -> Iterator[FakeExchange]:
    with FakeExchange() as exchange:
        yield exchange


# The TimescaleDB path: only where a real server with the extension is named.

TIMESCALEDB_URL = os.environ.get("TEST_TIMESCALEDB_URL")
needs_timescaledb = pytest.mark.skipif(
    not TIMESCALEDB_URL,
    reason="TEST_TIMESCALEDB_URL is not set: no server with the timescaledb extension to test against",
)


@pytest.fixture
def timescaledb_url() -> Iterator[str]:
    """A new, empty database on the TEST_TIMESCALEDB_URL server; dropped afterwards."""
    assert TIMESCALEDB_URL
    server = make_url(TIMESCALEDB_URL).set(drivername="postgresql+psycopg")
    admin = server.render_as_string(hide_password=False)
    name = f"oi_tsdb_test_{os.getpid()}_{next(_database_numbers)}"
    admin_execute(admin, f"CREATE DATABASE {name}")
    yield _with_database(admin, name)
    admin_execute(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def settings(fake: FakeExchange, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        exchange=ExchangeSettings(timeout_s=2.0, max_in_flight=4),
        collect=CollectSettings(),
        binance=BinanceSettings(base_url=fake.base_url),
        venues=VenuesSettings(enabled=("binance",)),  # Binance's fake; tests of other venues name theirs
        database=DatabaseSettings(url=database_url, timescaledb="auto"),
        spool=SpoolSettings(dir=tmp_path / "spool"),
        source="tests",
    )


@pytest.fixture
def store(settings: Settings, sink: PostgresSink) -> Store:
    return Store(sink, Spool(settings.spool.dir, settings.spool.max_bytes))


@pytest.fixture
def gate(settings: Settings) -> ExchangeGate:
    return ExchangeGate(settings.spool.dir / "exchange-ban.json")


def with_binance(settings: Settings, **changes: object) -> Settings:
    return replace(settings, binance=replace(settings.binance, **changes))


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment for an ``oi-collector`` subprocess pointed at the fake and the test database."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OI_")}
    env.update(
        OI_BINANCE_BASE_URL=settings.binance.base_url,
        OI_EXCHANGE_TIMEOUT_S=str(settings.exchange.timeout_s),
        OI_DATABASE_URL=settings.database.url,
        OI_SPOOL_DIR=str(settings.spool.dir),
        OI_VENUES_ENABLED=",".join(settings.venues.enabled),
    )
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run the real command line (the installed console script), as a user would."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "oi-collector"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_daemon(
    settings: Settings, fake: FakeExchange, *args: str, **env_extra: str
) -> subprocess.Popen[str]:
    """``oi-collector run``, with 1 s cycles unless ``env_extra`` says otherwise; returns once its first
    cycle has asked the exchange for rows."""
    env = cli_env(
        settings,
        **{
            "OI_COLLECT_INTERVAL_S": "1",
            "OI_COLLECT_OFFSET_S": "0",
            "OI_BINANCE_UNDERLYINGS": ",".join(settings.binance.underlyings),
            "OI_METRICS_PORT": "0",
            **env_extra,
        },
    )
    command = [str(Path(sys.executable).parent / "oi-collector"), "run", *args]
    daemon = subprocess.Popen(command, env=env, cwd=REPO, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 20
    while not fake.requests_to(OPEN_INTEREST) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # let that first cycle finish on this minute
    return daemon


StoredRow = tuple[str, str, str | None, str | None]  # ts in ms, open_interest, open_interest_usd, price


def stored_rows(url: str, venue: str) -> dict[str, StoredRow]:
    """Every stored row of ``venue`` by symbol, numbers as PostgreSQL writes them (every digit kept)."""
    with psycopg.connect(_plain(url)) as connection:
        rows = connection.execute(
            "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open_interest::text,"
            " open_interest_usd::text, underlying_price::text FROM open_interest WHERE venue = %s",
            (venue,),
        ).fetchall()
    return {symbol: (str(ms), oi, usd, price) for symbol, ms, oi, usd, price in rows}


def advance_minutes(fake: FakeExchange, count: int, hold_s: float = 2.2) -> list[int]:
    """Serve ``count`` new minutes, each long enough for at least one whole cycle."""
    minutes = []
    for _ in range(count):
        fake.minute_ms = (fake.minute_ms or 0) + 60_000
        minutes.append(fake.minute_ms)
        time.sleep(hold_s)
    return minutes
