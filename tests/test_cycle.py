"""One collection cycle against the real fake exchange and a real database."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import replace
from decimal import Decimal

import pytest
from sqlalchemy import Engine, text

from collector.config import Settings
from collector.cycle import CycleReport, KnownScopes, collect_once, make_http_client, run_cycle
from collector.deadline import Deadline
from collector.records import Scope
from collector.sink.store import Store
from collector.venues import Fetched, Gates, Scopes, make_venues
from collector.venues.gate import ExchangeGate
from tests.conftest import with_binance
from tests.fake_exchange import (
    RECENT_MINUTE_MS,
    FakeExchange,
    Fault,
    empty_list,
    html_page,
    http_error,
    malformed_rows,
    truncated_json,
)


def collect(settings: Settings, store: Store, budget_s: float | None = None) -> CycleReport:
    """One cycle; ``budget_s`` is its time budget (the default: one interval)."""
    gate = ExchangeGate(settings.spool.dir / "exchange-ban.json")
    deadline = None if budget_s is None else time.time() + budget_s
    return asyncio.run(collect_once(settings, store, gate, deadline))


def stored_rows(engine: Engine) -> dict[str, tuple[str, Decimal, Decimal]]:
    with engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT symbol, (extract(epoch FROM ts) * 1000)::bigint, open_interest, open_interest_usd"
                " FROM open_interest"
            )
        )
        return {row[0]: (str(row[1]), row[2], row[3]) for row in rows}


def served(
    fake: FakeExchange, pairs: list[tuple[str, str]] | None = None
) -> dict[str, tuple[str, Decimal, Decimal]]:
    rows = [row for pair in (pairs or fake.pairs()) for row in fake.rows_for(*pair)]
    return {
        row["symbol"]: (row["timestamp"], Decimal(row["sumOpenInterest"]), Decimal(row["sumOpenInterestUsd"]))
        for row in rows
    }


def test_a_cycle_stores_exactly_what_the_exchange_served(
    settings: Settings, store: Store, engine: Engine, fake: FakeExchange
) -> None:
    fake.minute_ms = RECENT_MINUTE_MS
    report = collect(settings, store)
    assert report.ok
    assert report.scopes_ok == len(fake.pairs())
    assert stored_rows(engine) == served(fake)


def test_a_second_cycle_in_the_same_minute_adds_nothing(
    settings: Settings, store: Store, engine: Engine, fake: FakeExchange
) -> None:
    fake.minute_ms = RECENT_MINUTE_MS
    first = collect(settings, store)
    second = collect(settings, store)
    assert first.committed and first.committed.written
    assert first.committed.written.written == len(served(fake))
    assert second.committed and second.committed.written
    assert (second.committed.written.written, second.committed.written.unchanged) == (0, len(served(fake)))
    assert len(stored_rows(engine)) == len(served(fake))


def test_pairs_are_fetched_concurrently_within_the_limit(
    settings: Settings, store: Store, fake: FakeExchange
) -> None:
    fake.delay_s = 0.05
    collect(settings, store)
    assert fake.max_in_flight == settings.exchange.max_in_flight


def test_malformed_rows_are_rejected_one_by_one_and_good_rows_kept(
    settings: Settings,
    store: Store,
    engine: Engine,
    fake: FakeExchange,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake.minute_ms = RECENT_MINUTE_MS
    bad = (
        {
            "symbol": "ETH-251226-NOPE-C",
            "sumOpenInterest": "1",
            "sumOpenInterestUsd": "1",
            "timestamp": str(RECENT_MINUTE_MS),
        },
        {
            "symbol": "ETH-251226-9999-C",
            "sumOpenInterest": "lots",
            "sumOpenInterestUsd": "1",
            "timestamp": str(RECENT_MINUTE_MS),
        },
        {"symbol": "ETH-251226-9998-P", "sumOpenInterestUsd": "1", "timestamp": str(RECENT_MINUTE_MS)},
    )
    fake.inject(malformed_rows(*bad), underlying="ETH", expiry="251226")
    with caplog.at_level(logging.WARNING, logger="collector.cycle"):
        report = collect(settings, store)
    assert report.rows_rejected == 3
    assert report.ok  # the pair itself was fetched and every good row stored
    assert stored_rows(engine) == served(fake)
    lines = [record.getMessage() for record in caplog.records]
    assert any("ETH 251226" in line and "ETH-251226-NOPE-C" in line and "'symbol'" in line for line in lines)
    assert any("ETH-251226-9999-C" in line and "'sumOpenInterest'" in line for line in lines)
    assert any(
        "ETH-251226-9998-P" in line and "'sumOpenInterest'" in line and "missing" in line for line in lines
    )


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (http_error(400, -1121, "Invalid symbol."), "HTTP 400, binance error -1121: Invalid symbol."),
        (
            http_error(503, -1001, "Service Unavailable."),
            "HTTP 503, binance error -1001: Service Unavailable.",
        ),
        (html_page(200), "HTTP 200 with an HTML page"),
        (html_page(502), "HTTP 502 with an HTML page"),
        (truncated_json(), "HTTP 200 with a body that is not JSON"),
        (http_error(200, -1000, "An unknown error occurred."), "HTTP 200, binance error -1000"),
    ],
)
def test_a_failing_pair_fails_alone(
    settings: Settings,
    store: Store,
    engine: Engine,
    fake: FakeExchange,
    caplog: pytest.LogCaptureFixture,
    fault: object,
    expected: str,
) -> None:
    fake.minute_ms = RECENT_MINUTE_MS
    fake.inject(fault, underlying="BTC", expiry="251226", times=None)  # type: ignore[arg-type]
    with caplog.at_level(logging.ERROR, logger="collector.cycle"):
        report = collect(settings, store, budget_s=2.0)
    assert not report.ok
    assert [outcome.scope.label for outcome in report.outcomes if not outcome.ok] == ["BTC 251226"]
    others = [pair for pair in fake.pairs() if pair != ("BTC", "251226")]
    assert stored_rows(engine) == served(fake, others)
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("binance BTC 251226")]
    assert expected in line


def test_a_timeout_fails_only_that_pair(settings: Settings, store: Store, fake: FakeExchange) -> None:
    quick = replace(settings, exchange=replace(settings.exchange, timeout_s=0.3))
    fake.inject(Fault(delay_s=1.0), underlying="SOL", expiry="251226", times=None)
    report = collect(quick, store, budget_s=2.0)
    failed = [outcome for outcome in report.outcomes if not outcome.ok]
    assert [outcome.scope.label for outcome in failed] == ["SOL 251226"]
    assert "timed out" in str(failed[0].error)


def test_an_empty_answer_stores_nothing_for_that_pair_and_says_so(
    settings: Settings, store: Store, fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(empty_list(), underlying="XRP")
    with caplog.at_level(logging.WARNING, logger="collector.cycle"):
        collect(settings, store)
    assert any("XRP" in r.getMessage() and "no rows" in r.getMessage() for r in caplog.records)


def test_explicit_expiries_poll_exactly_those(settings: Settings, store: Store, fake: FakeExchange) -> None:
    expiries = sorted({expiry for _, expiry in fake.pairs()})[:2]
    report = collect(with_binance(settings, underlyings=("BTC", "ETH"), expiries=tuple(expiries)), store)
    assert sorted((o.scope.underlying, f"{o.scope.expiry:%y%m%d}") for o in report.outcomes) == sorted(
        (underlying, expiry) for underlying in ("BTC", "ETH") for expiry in expiries
    )


def test_all_expiries_follow_the_listing_at_each_cycle(settings: Settings, store: Store) -> None:
    with FakeExchange({"BTC": ["251226"]}) as small:
        pointed = with_binance(settings, base_url=small.base_url, underlyings=("BTC",))
        first = collect(pointed, store)
        small.set_universe({"BTC": ["251226", "260102"]})
        second = collect(pointed, store)
    assert [o.scope.label for o in first.outcomes] == ["BTC 251226"]
    assert [o.scope.label for o in second.outcomes] == ["BTC 251226", "BTC 260102"]


def test_an_unlisted_underlying_is_named_beside_the_listed_ones(
    settings: Settings, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="collector.cycle"):
        report = collect(with_binance(settings, underlyings=("BTCUSDT", "ETH")), store)
    assert not report.ok
    failed = [outcome for outcome in report.outcomes if not outcome.ok]
    assert [outcome.scope.label for outcome in failed] == ["BTCUSDT"]  # failed, journalled, in gaps
    assert report.scopes_ok > 0  # ETH was still collected
    listed = "BTCUSDT is not listed (listed: BNB, BTC, DOGE, ETH, SOL, XRP)"
    assert any(listed in record.getMessage() for record in caplog.records)


def test_nothing_to_poll_is_a_failed_cycle(settings: Settings, store: Store, fake: FakeExchange) -> None:
    fake.inject(html_page(503), path="/eapi/v1/exchangeInfo", times=None)
    report = collect(settings, store, budget_s=2.0)
    assert not report.ok
    assert report.outcomes == []
    assert report.problem is not None and "nothing to poll" in report.problem


def test_a_cycle_starts_on_the_last_known_pairs_and_polls_them_when_the_listing_fails(
    settings: Settings, store: Store, fake: FakeExchange
) -> None:
    known = KnownScopes()
    gate = ExchangeGate()
    assert asyncio.run(collect_once(settings, store, gate, None, known)).ok
    assert len(known.by_venue["binance"]) == len(fake.pairs())
    fake.inject(html_page(503), path="/eapi/v1/exchangeInfo", times=None)
    report = asyncio.run(collect_once(settings, store, gate, time.time() + 2.0, known))
    assert report.scopes_ok == len(fake.pairs())
    assert report.problem is None


def test_a_pair_that_is_no_longer_listed_is_dropped(settings: Settings, store: Store) -> None:
    with FakeExchange({"BTC": ["251226", "260102"]}) as small:
        pointed = with_binance(settings, base_url=small.base_url, underlyings=("BTC",))
        known, gate = KnownScopes(), ExchangeGate()
        asyncio.run(collect_once(pointed, store, gate, None, known))
        small.set_universe({"BTC": ["260102"]})
        report = asyncio.run(collect_once(pointed, store, gate, None, known))
    assert [outcome.scope.label for outcome in report.outcomes] == ["BTC 260102"]
    assert report.ok


class _BrokenVenue:
    """A venue implementation with a bug: its listing hands the cycle something that is not a list."""

    name = "broken"

    def __init__(self) -> None:
        self.gate = ExchangeGate()

    async def scopes(self) -> Scopes:
        return Scopes(None)  # type: ignore[arg-type]

    async def fetch(self, scope: Scope) -> Fetched:
        raise AssertionError("never asked")


def test_a_venue_whose_planning_breaks_costs_only_that_venue(
    settings: Settings, store: Store, fake: FakeExchange
) -> None:
    async def cycle() -> CycleReport:
        async with make_http_client(settings) as http:
            deadline = Deadline(time.time() + 10)
            venues = [_BrokenVenue(), *make_venues(settings, http, Gates(), deadline)]
            return await run_cycle(venues, store, KnownScopes(), deadline, 4)

    report = asyncio.run(cycle())
    assert not report.ok and report.problem is not None and report.problem.startswith("broken: TypeError")
    assert report.scopes_ok == len(fake.pairs()) and report.rows_fetched == len(fake.all_rows())
