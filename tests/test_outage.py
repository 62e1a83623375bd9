"""Database outages and process faults, for real: a TCP proxy of ours between the collector and PostgreSQL is
cut and restored mid-run; daemons are sent SIGTERM and SIGKILL. Every row of every cycle must arrive, once."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from collector.config import DatabaseSettings, Settings
from collector.cycle import collect_once
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.conftest import REPO, advance_minutes, cli_env, run_cli, start_daemon, with_binance
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange
from tests.tcp_proxy import TcpProxy

MINUTE = RECENT_MINUTE_MS
UNIVERSE = {"BTC": ["251226", "260102", "260109"], "ETH": ["251226", "260102"], "DOGE": ["251226"]}


@pytest.fixture
def proxy(settings: Settings) -> Iterator[TcpProxy]:
    url = make_url(settings.database.url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as running:
        yield running


@pytest.fixture
def proxied(settings: Settings, proxy: TcpProxy) -> Iterator[tuple[Settings, FakeExchange]]:
    """Settings whose database URL goes through the proxy, and a small fake exchange (fast cycles)."""
    url = make_url(settings.database.url).set(port=proxy.port).render_as_string(hide_password=False)
    with FakeExchange(UNIVERSE, minute_ms=MINUTE) as fake:
        pointed = with_binance(settings, base_url=fake.base_url, underlyings=("BTC", "ETH", "DOGE"))
        yield replace(pointed, database=DatabaseSettings(url=url)), fake


def query(settings: Settings, sql: str) -> list[tuple]:
    plain = make_url(settings.database.url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        return connection.execute(sql).fetchall()  # type: ignore[arg-type]


def rows_per_minute(settings: Settings) -> dict[int, int]:
    rows = query(
        settings, "SELECT (extract(epoch FROM ts) * 1000)::bigint, count(*) FROM open_interest GROUP BY 1"
    )
    return dict(rows)  # type: ignore[arg-type]


def test_a_cycle_during_an_outage_is_spooled_then_written_once_the_database_is_back(
    settings: Settings, proxied: tuple[Settings, FakeExchange], proxy: TcpProxy
) -> None:
    through_proxy, fake = proxied
    engine = make_engine(through_proxy.database.url)
    store = Store(PostgresSink(engine), Spool(settings.spool.dir, settings.spool.max_bytes))
    gate = ExchangeGate()
    proxy.cut()
    down = asyncio.run(collect_once(through_proxy, store, gate))
    assert not down.ok and not down.stored
    assert down.problem is not None and "database unavailable" in down.problem
    assert len(store.spool.pending()) == 1
    proxy.restore()
    fake.minute_ms = MINUTE + 60_000
    up = asyncio.run(collect_once(through_proxy, store, gate))
    engine.dispose()
    assert up.ok
    assert up.committed is not None and up.committed.replayed.batches == 1
    assert store.spool.pending() == []
    rows = len(fake.all_rows())
    assert rows_per_minute(settings) == {MINUTE: rows, MINUTE + 60_000: rows}
    statuses = query(settings, "SELECT status, count(*) FROM collection_runs GROUP BY 1 ORDER BY 1")
    assert statuses == [("ok", len(fake.pairs())), ("spooled", len(fake.pairs()))]


def test_a_daemon_loses_no_row_through_two_database_cuts(
    settings: Settings, proxied: tuple[Settings, FakeExchange], proxy: TcpProxy
) -> None:
    through_proxy, fake = proxied
    daemon = start_daemon(through_proxy, fake, "--no-migrate")
    try:
        minutes = [MINUTE, *advance_minutes(fake, 1)]
        proxy.cut()
        minutes += advance_minutes(fake, 2)
        proxy.restore()
        minutes += advance_minutes(fake, 1)
        proxy.cut()
        minutes += advance_minutes(fake, 1)
        proxy.restore()
        minutes += advance_minutes(fake, 1)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    finally:
        daemon.kill()
    assert daemon.returncode == 0, stderr
    assert "database unavailable" in stderr
    assert rows_per_minute(settings) == dict.fromkeys(minutes, len(fake.all_rows())), stderr
    assert query(settings, "SELECT count(*) FROM collection_runs WHERE status = 'spooled'")[0][0] > 0
    assert Spool(settings.spool.dir, 1).pending() == []


def test_sigkill_mid_outage_then_restart_loses_nothing_that_reached_the_spool(
    settings: Settings, proxied: tuple[Settings, FakeExchange], proxy: TcpProxy
) -> None:
    through_proxy, fake = proxied
    proxy.cut()
    daemon = start_daemon(through_proxy, fake, "--no-migrate")
    minutes = [MINUTE, *advance_minutes(fake, 2)]
    daemon.kill()  # SIGKILL: no handler, no flush
    daemon.communicate(timeout=10)
    spooled = Spool(settings.spool.dir, 1).pending()
    assert spooled
    proxy.restore()
    again = run_cli("once", env=cli_env(through_proxy, OI_BINANCE_UNDERLYINGS="BTC,ETH,DOGE"))
    assert again.returncode == 0, again.stderr
    assert f"wrote {len(spooled)} spooled batches" in again.stderr
    expected = dict.fromkeys(minutes, len(fake.all_rows()))
    assert rows_per_minute(settings) == expected
    assert query(settings, "SELECT count(*) = count(DISTINCT (symbol, ts)) FROM open_interest") == [(True,)]


def test_sigterm_finishes_the_cycle_and_flushes_the_spool(
    settings: Settings, proxied: tuple[Settings, FakeExchange], proxy: TcpProxy
) -> None:
    through_proxy, fake = proxied
    proxy.cut()
    daemon = start_daemon(through_proxy, fake, "--no-migrate")
    time.sleep(2.5)
    proxy.restore()
    daemon.send_signal(signal.SIGTERM)
    _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    assert "received SIGTERM" in stderr and "stopped" in stderr
    assert Spool(settings.spool.dir, 1).pending() == []
    assert rows_per_minute(settings) == {MINUTE: len(fake.all_rows())}


def test_a_daemon_started_while_the_database_is_down_collects_and_migrates_later(
    settings: Settings, empty_database_url: str, proxy: TcpProxy
) -> None:
    url = make_url(empty_database_url)
    with TcpProxy(url.host or "127.0.0.1", url.port or 5432) as own_proxy, FakeExchange(UNIVERSE) as fake:
        fake.minute_ms = MINUTE
        proxied_url = url.set(port=own_proxy.port).render_as_string(hide_password=False)
        own = replace(
            with_binance(settings, base_url=fake.base_url, underlyings=("BTC", "ETH", "DOGE")),
            database=DatabaseSettings(url=proxied_url),
        )
        own_proxy.cut()
        daemon = start_daemon(own, fake)
        time.sleep(2.5)
        own_proxy.restore()
        time.sleep(2.5)
        daemon.send_signal(signal.SIGTERM)
        _, stderr = daemon.communicate(timeout=30)
    assert daemon.returncode == 0, stderr
    assert "migration failed (above); collecting into the spool, trying again every 1 s" in stderr
    direct = replace(settings, database=DatabaseSettings(url=empty_database_url))
    assert rows_per_minute(direct) == {MINUTE: len(fake.all_rows())}


def test_two_collectors_at_once_store_each_row_once_without_errors(
    settings: Settings, fake: FakeExchange
) -> None:
    fake.minute_ms = MINUTE
    command = [str(Path(sys.executable).parent / "oi-collector"), "once"]
    runs = [
        subprocess.Popen(
            command, env=cli_env(settings, OI_SPOOL_DIR=f"{settings.spool.dir}-{n}"), cwd=REPO,
            stderr=subprocess.PIPE, text=True,
        )
        for n in range(2)
    ]  # fmt: skip
    results = [(run.wait(timeout=60), run.communicate()[1]) for run in runs]
    assert [code for code, _ in results] == [0, 0], results
    assert rows_per_minute(settings) == {MINUTE: len(fake.all_rows())}
