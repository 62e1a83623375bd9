"""Coverage in SQL: the journal (collection_runs), the coverage_gaps view and `oi-collector gaps`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from collector.config import Settings
from collector.cycle import collect_once
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.conftest import cli_env, run_cli, with_binance
from tests.fake_exchange import FakeExchange, html_page

EXPIRED, LIVE = "251226", "271231"  # one expiry settled long ago, one that trades for a while yet


@pytest.fixture
def small(settings: Settings) -> Iterator[tuple[FakeExchange, Settings]]:
    if time.time() % 60 > 55:  # keep the whole test inside one wall-clock minute
        time.sleep(6)
    with FakeExchange({"BTC": [EXPIRED, LIVE]}) as fake:
        yield fake, with_binance(settings, base_url=fake.base_url, underlyings=("BTC",))


def this_minute() -> datetime:
    return datetime.fromtimestamp(time.time() // 60 * 60, UTC)


def collect_minutes(
    fake: FakeExchange, settings: Settings, store: Store, gate: ExchangeGate, *ago: int
) -> None:
    for minutes in ago:
        fake.minute_ms = int((this_minute() - timedelta(minutes=minutes)).timestamp() * 1000)
        assert asyncio.run(collect_once(settings, store, gate)).ok


def test_every_pair_of_every_cycle_is_journaled(
    small: tuple[FakeExchange, Settings], store: Store, gate: ExchangeGate, engine: Engine
) -> None:
    fake, settings = small
    fake.inject(html_page(502), expiry=LIVE, times=None)
    asyncio.run(collect_once(settings, store, gate, time.time() + 1.5))
    with engine.connect() as connection:
        runs = connection.execute(
            text("SELECT expiry, status, rows_stored, http_status, error_message FROM collection_runs")
        ).all()
    by_expiry = {f"{row.expiry:%y%m%d}": row for row in runs}
    assert by_expiry[EXPIRED].status == "ok"
    assert by_expiry[EXPIRED].rows_stored == len(fake.rows_for("BTC", EXPIRED))
    assert (by_expiry[LIVE].status, by_expiry[LIVE].rows_stored, by_expiry[LIVE].http_status) == (
        "failed",
        0,
        502,
    )
    assert "HTML page" in by_expiry[LIVE].error_message


def test_coverage_gaps_finds_the_missing_minute_and_the_trailing_gap(
    small: tuple[FakeExchange, Settings], store: Store, gate: ExchangeGate, engine: Engine
) -> None:
    fake, settings = small
    collect_minutes(fake, settings, store, gate, 10, 9, 7)
    with engine.connect() as connection:
        gaps = connection.execute(text("SELECT * FROM coverage_gaps")).all()
    m = this_minute()
    assert [(f"{g.expiry:%y%m%d}", g.gap_start, g.gap_end, g.minutes_missing) for g in gaps] == [
        (EXPIRED, m - timedelta(minutes=8), m - timedelta(minutes=8), 1),
        (LIVE, m - timedelta(minutes=8), m - timedelta(minutes=8), 1),
        (LIVE, m - timedelta(minutes=6), m - timedelta(minutes=1), 6),  # not expired: still owed
    ]


def test_gaps_command_prints_a_table_and_exits_1(
    small: tuple[FakeExchange, Settings], store: Store, gate: ExchangeGate
) -> None:
    fake, settings = small
    collect_minutes(fake, settings, store, gate, 10, 9, 7)
    result = run_cli("gaps", "--since", "5m", env=cli_env(settings))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "venue", "scope", "gap", "start", "(UTC)", "gap", "end", "(UTC)", "minutes", "missing"
    ]  # fmt: skip
    m = this_minute()
    assert lines[1].split() == [
        "binance", "BTC", LIVE, *f"{m - timedelta(minutes=5):%Y-%m-%d %H:%M}".split(),
        *f"{m - timedelta(minutes=1):%Y-%m-%d %H:%M}".split(), "5",
    ]  # fmt: skip
    assert lines[-1] == "1 gap, 5 scope-minutes missing in the last 5m"


def test_gaps_command_exits_0_when_every_minute_is_there(
    small: tuple[FakeExchange, Settings], store: Store, gate: ExchangeGate
) -> None:
    fake, settings = small
    collect_minutes(fake, settings, store, gate, 2, 1)
    result = run_cli("gaps", env=cli_env(settings))
    assert result.returncode == 0, result.stdout
    assert "no gaps in the last 24h" in result.stdout


def test_gaps_rejects_a_bad_age(settings: Settings) -> None:
    result = run_cli("gaps", "--since", "yesterday", env=cli_env(settings))
    assert result.returncode == 2
    assert "'yesterday' is not an age such as 90m, 24h or 7d" in result.stderr


@pytest.mark.parametrize(
    ("env", "scope", "said"),
    [
        (
            {"OI_BINANCE_EXPIRIES": f"{LIVE},270101"},
            "BTC 270101",
            f"BTC 270101 is not listed (expiries of BTC listed: {EXPIRED}, {LIVE})",
        ),
        ({"OI_BINANCE_UNDERLYINGS": "BTC,BTCUSDT"}, "BTCUSDT", "BTCUSDT is not listed (listed: BTC)"),
    ],
    ids=["an expiry", "an underlying"],
)
def test_a_configured_scope_the_venue_does_not_list_fails_exits_1_and_shows_in_gaps(
    small: tuple[FakeExchange, Settings], env: dict[str, str], scope: str, said: str
) -> None:
    fake, settings = small
    fake.minute_ms = int(this_minute().timestamp() * 1000)
    result = run_cli("once", env=cli_env(settings, **{"OI_BINANCE_UNDERLYINGS": "BTC", **env}))
    assert result.returncode == 1
    assert said in result.stderr
    gaps = run_cli("gaps", "--since", "5m", env=cli_env(settings))
    assert gaps.returncode == 1
    [line] = [line for line in gaps.stdout.splitlines() if line.startswith(f"binance  {scope} ")]
    assert line.split()[-1] == "1"  # missing since this minute, the first it was asked for
