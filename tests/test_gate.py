"""The exchange gate read defensively: clamped bans and pauses, weight headers that do not parse, the ban
state file whatever it holds, and one probe request after a ban before the full fan-out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from collector.errors import NotSentError
from collector.venues.gate import MAX_BAN_S, MAX_PAUSE_S, ExchangeGate, when


def test_a_ban_claimed_past_three_days_is_taken_as_three_days_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    gate = ExchangeGate(tmp_path / "ban.json")
    with caplog.at_level(logging.WARNING):
        gate.ban(time.time() + 999_999_999_999, "openInterest BTC 251226")
    assert gate.banned_until is not None and gate.banned_until <= time.time() + MAX_BAN_S
    saved = json.loads((tmp_path / "ban.json").read_text())["banned_until"]
    assert saved == gate.banned_until
    assert any("longer than the 3 days it documents" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("until", [float("inf"), float("nan"), -1e300])
def test_a_ban_end_that_is_no_time_never_breaks_the_gate(until: float) -> None:
    gate = ExchangeGate()
    gate.ban(until, "x")
    assert gate.banned_until is not None and gate.banned_until <= time.time() + MAX_BAN_S


def test_a_429_pause_is_at_most_five_minutes() -> None:
    gate = ExchangeGate()
    gate.pause(1_000_000_000, "x")
    assert gate.paused_until <= time.time() + MAX_PAUSE_S


@pytest.mark.parametrize(
    "content",
    [
        '{"banned_until": 1e300}',
        '{"banned_until": "Infinity"}',
        "[]",
        '{"banned_until": null}',
        "\xff\x00",
        "",
    ],
)
def test_a_ban_state_file_of_any_content_never_stops_the_start(tmp_path: Path, content: str) -> None:
    state = tmp_path / "ban.json"
    state.write_text(content)
    gate = ExchangeGate(state)
    assert gate.banned_until is None or gate.banned_until <= time.time() + MAX_BAN_S


def test_a_ban_state_file_until_2058_is_clamped_at_start(tmp_path: Path) -> None:
    state = tmp_path / "ban.json"
    state.write_text(json.dumps({"banned_until": 2_800_000_000}))
    gate = ExchangeGate(state)
    assert gate.banned_until is not None and gate.banned_until <= time.time() + MAX_BAN_S


@pytest.mark.parametrize("moment", [1e300, float("nan"), -1e20])
def test_when_never_fails(moment: float) -> None:
    assert isinstance(when(moment), str)


@pytest.mark.parametrize(
    "headers",
    [{"X-MBX-USED-WEIGHT-0M": "5"}, {"X-MBX-USED-WEIGHT-1M": "²"}, {"X-MBX-USED-WEIGHT-1M": "-3"}],
)
def test_a_weight_header_that_does_not_parse_is_ignored_with_one_line(
    headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    gate = ExchangeGate()
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            gate.in_flight += 1
            gate.leave(headers, 200)
    assert gate.used_weight is None and gate.in_flight == 0
    [line] = [r.getMessage() for r in caplog.records]
    assert line.startswith("ignoring binance's weight header X-MBX-USED-WEIGHT-")


def test_a_good_weight_header_beside_a_bad_one_is_still_read() -> None:
    gate = ExchangeGate()
    gate.in_flight += 1
    gate.leave({"X-MBX-USED-WEIGHT-0M": "5", "X-MBX-USED-WEIGHT-1M": "12"}, 200)
    assert gate.used_weight is not None and (gate.used_weight.window_s, gate.used_weight.used) == (60, 12)


def test_after_a_ban_one_probe_goes_alone_then_every_request() -> None:
    async def scenario() -> list[str]:
        gate = ExchangeGate()
        gate.ban(time.time() + 0.2, "x")
        events: list[str] = []

        async def request(name: str) -> None:
            probe = await gate.enter(time.time() + 5, name)
            events.append(f"{name} sent{' (probe)' if probe else ''}")
            await asyncio.sleep(0.2)
            events.append(f"{name} answered")
            gate.leave({}, 200, probe=probe)

        await asyncio.gather(*(request(f"r{n}") for n in range(4)))
        return events

    events = asyncio.run(scenario())
    assert events[0].endswith("sent (probe)") and events[1].endswith("answered")
    assert sum("probe" in event for event in events) == 1
    assert len(events) == 8


def test_a_probe_answered_with_another_ban_keeps_everything_held() -> None:
    async def scenario() -> tuple[bool, bool]:
        gate = ExchangeGate()
        gate.ban(time.time() + 0.05, "x")
        await asyncio.sleep(0.1)
        probe = await gate.enter(time.time() + 5, "probe")
        gate.leave({}, 418, probe=probe)
        gate.ban(time.time() + 60, "probe")
        try:
            await gate.enter(time.time() + 0.5, "next")
        except NotSentError:
            return probe, True
        return probe, False

    assert asyncio.run(scenario()) == (True, True)


@pytest.mark.parametrize(
    "limit",
    [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 0},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": -5},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "DAY", "intervalNum": 10**9, "limit": 2400},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": ["MINUTE"], "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": True, "limit": 2400},
    ],
)
def test_a_rate_limit_no_exchange_would_set_is_not_taken(limit: dict[str, object]) -> None:
    gate = ExchangeGate()
    gate.set_limits([limit])
    assert gate.limits == {}


def test_a_limit_of_one_still_lets_one_request_a_window_through() -> None:
    async def one() -> bool:
        gate = ExchangeGate()
        gate.set_limits(
            [{"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 1}]
        )
        return await gate.enter(time.time() + 2, "x") is False

    assert asyncio.run(one())
