"""Exchange faults, each against the real fake exchange: the log line, the counter, and the rows."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import replace

import pytest

from collector.config import Settings
from collector.cycle import CycleReport, collect_once
from collector.sink.store import Store
from collector.venues import binance
from collector.venues.binance import Pair
from collector.venues.gate import ExchangeGate
from tests.conftest import cli_env, run_cli, with_binance
from tests.fake_exchange import (
    OPEN_INTEREST,
    FakeExchange,
    Fault,
    Request,
    empty_list,
    html_page,
    http_error,
    malformed_rows,
    truncated_json,
)

BTC = Pair("BTC", "251226")
BAN_MESSAGE = "Way too many requests; IP(127.0.0.1) banned until {ms}. Please use WebSocket Streams."


def collect(settings: Settings, store: Store, gate: ExchangeGate, budget_s: float = 10.0) -> CycleReport:
    return asyncio.run(collect_once(settings, store, gate, time.time() + budget_s))


def outcome(report: CycleReport, pair: Pair = BTC):  # type: ignore[no-untyped-def]
    scope = binance.scope(pair.underlying, pair.expiry)
    [found] = [o for o in report.outcomes if o.scope == scope]
    return found


def pair_requests(fake: FakeExchange, pair: Pair = BTC) -> list[Request]:
    return [
        r
        for r in fake.requests_to(OPEN_INTEREST)
        if (r.params.get("underlyingAsset"), r.params.get("expiration")) == (pair.underlying, pair.expiry)
    ]


def stored_symbols(store: Store) -> set[str]:
    with store.sink.engine.connect() as connection:
        return set(connection.exec_driver_sql("SELECT symbol FROM open_interest").scalars())


def test_429_with_retry_after_waits_as_told_then_the_rows_arrive_in_the_same_cycle(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    fake.inject(
        http_error(429, -1003, "Too many requests.", retry_after=1), underlying="BTC", expiry="251226"
    )
    with caplog.at_level(logging.WARNING):
        report = collect(settings, store, gate)
    assert report.ok
    assert outcome(report).attempts == 2
    first, second = pair_requests(fake)
    assert second.at - first.at >= 1.0  # waited as told
    paused = [r for r in fake.requests if first.at + 0.05 < r.at < first.at + 0.95]
    assert paused == []  # and sent nothing else meanwhile
    assert {row["symbol"] for row in fake.rows_for("BTC", "251226")} <= stored_symbols(store)
    assert any("rate limited (HTTP 429): sending nothing until" in r.getMessage() for r in caplog.records)


def test_418_stops_every_request_until_the_ban_ends_said_once(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    ban_end_ms = int((time.time() + 30) * 1000)
    fake.inject(http_error(418, -1003, BAN_MESSAGE.format(ms=ban_end_ms)), underlying="BTC", expiry="251226")
    with caplog.at_level(logging.ERROR):
        report = collect(settings, store, gate, budget_s=3.0)
    banned_at = pair_requests(fake)[0].at
    assert [r for r in fake.requests if r.at > banned_at + 0.05] == []  # nothing sent after the 418
    assert not report.ok
    bans = [r.getMessage() for r in caplog.records if "banned this IP (HTTP 418)" in r.getMessage()]
    assert len(bans) == 1
    assert time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ban_end_ms // 1000)) in bans[0]
    assert any("scopes not polled this cycle: binance banned this IP until" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    assert gate.banned_until == ban_end_ms / 1000


def test_a_ban_ends_by_itself_and_collection_resumes_in_the_same_cycle(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange
) -> None:
    fake.inject(http_error(418, -1003, "Way too many requests; IP banned.", retry_after=2), underlying="BTC")
    report = collect(settings, store, gate, budget_s=8.0)
    assert report.ok
    assert sorted(o.attempts for o in report.outcomes)[-2:] == [1, 2]  # the banned request, sent again
    [banned_at] = [r.at for r in fake.requests_to(OPEN_INTEREST) if r.status == 418]
    assert min(r.at for r in fake.requests if r.at > banned_at + 0.05) >= banned_at + 1.9


def test_a_ban_survives_a_restart_so_a_restart_loop_sends_nothing(
    settings: Settings, fake: FakeExchange
) -> None:
    ban = http_error(418, -1003, "Way too many requests; IP banned.", retry_after=300)
    fake.inject(ban, underlying="BTC")
    first = run_cli("once", env=cli_env(settings))
    assert first.returncode == 1
    sent = len(fake.requests)
    second = run_cli("once", env=cli_env(settings))
    assert second.returncode == 1
    assert len(fake.requests) == sent  # the restarted collector kept quiet
    assert "binance IP ban from an earlier run lasts until" in second.stderr


@pytest.mark.parametrize(
    "fault",
    [
        http_error(503, -1001, "Service Unavailable."),
        http_error(500, -1000, "Unknown error"),
        html_page(502),
        Fault(drop_connection=True),
    ],
    ids=["503", "500", "502-html", "connection-reset"],
)
def test_server_and_network_faults_are_retried_with_backoff(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange, fault: Fault
) -> None:
    fake.inject(fault, underlying="BTC", expiry="251226", times=2)
    report = collect(settings, store, gate)
    assert report.ok
    assert outcome(report).attempts == 3
    first, second, third = pair_requests(fake)
    # exponential backoff, jittered down to half: 0.25-0.5 s, then 0.5-1 s
    assert second.at - first.at >= 0.25
    assert third.at - second.at >= 0.5
    assert {row["symbol"] for row in fake.rows_for("BTC", "251226")} <= stored_symbols(store)


def test_a_read_timeout_is_retried(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange, caplog: pytest.LogCaptureFixture
) -> None:
    quick = replace(settings, exchange=replace(settings.exchange, timeout_s=0.3))
    fake.inject(Fault(delay_s=1.0), underlying="BTC", expiry="251226")
    with caplog.at_level(logging.INFO, logger="collector.exchange"):
        report = collect(quick, store, gate)
    assert report.ok
    assert outcome(report).attempts == 2
    [retry] = [r.getMessage() for r in caplog.records if "; retry" in r.getMessage()]
    assert re.fullmatch(
        r"openInterest BTC 251226: timed out \(no whole answer within 0\.3 s\) from http://127\.0\.0\.1:\d+"
        r"/eapi/v1/openInterest; retry 1 in 0\.\d s",
        retry,
    )


def test_retries_never_run_past_the_next_cycles_start(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange
) -> None:
    fake.inject(http_error(503, -1001, "Service Unavailable."), underlying="BTC", expiry="251226", times=None)
    started = time.time()
    report = collect(settings, store, gate, budget_s=2.0)
    assert time.time() - started < 2.5
    assert not outcome(report).ok
    assert outcome(report).attempts >= 2
    assert report.scopes_ok == len(fake.pairs()) - 1


@pytest.mark.parametrize(
    ("fault", "failed"),
    [
        (html_page(200), True),
        (truncated_json(), True),
        (http_error(200, -1000, "An unknown error occurred."), True),
        (http_error(400, -1121, "Invalid symbol."), True),
        (empty_list(), False),
        (malformed_rows({"symbol": "BTC-251226-X-C"}), False),
    ],
    ids=["html-200", "truncated-json", "json-error-200", "400", "empty-list", "malformed-rows"],
)
def test_answers_that_a_retry_cannot_fix_are_not_retried(
    settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange, fault: Fault, failed: bool
) -> None:
    fake.inject(fault, underlying="BTC", expiry="251226", times=None)
    report = collect(settings, store, gate)
    assert len(pair_requests(fake)) == 1
    assert outcome(report).ok is not failed
    assert report.scopes_ok == len(fake.pairs()) - failed


def test_used_weight_is_read_and_the_collector_slows_down_before_the_limit(
    settings: Settings, store: Store, gate: ExchangeGate
) -> None:
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 8}]
    universe = {"BTC": ["251226", "260102", "260109", "260116", "260130", "260227", "260327", "260626"]}
    with FakeExchange(universe, rate_limits=limits) as strict:
        pointed = with_binance(settings, base_url=strict.base_url, underlyings=("BTC",))
        report = collect(pointed, store, gate)
        assert strict.count_status(429) == 0 and strict.count_status(418) == 0
        assert report.ok
        assert report.used_weight["binance"] <= 8
        assert gate.limits == {1: 8}
        assert len(stored_symbols(store)) == len(strict.all_rows())
