"""What every request to the exchange must pass: an IP ban, a 429 pause, and the request-weight budget.

One gate per process, shared by every cycle. The ban's end is written to a file so that a restarted collector
(a container restart loop) keeps quiet until the ban is over instead of lengthening it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from collector.errors import NotSentError

log = logging.getLogger("collector.exchange")
_WEIGHT_HEADER = re.compile(r"x-mbx-used-weight-(\d+)([smhd])", re.IGNORECASE)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
DEFAULT_BAN_S = 120.0  # the exchange's shortest ban, for a 418 that says nothing of its length
DEFAULT_PAUSE_S = 5.0  # a 429 without Retry-After
_WINDOW_CUSHION_S = 0.25  # resume a little after our clock says the window turned: clocks differ


@dataclass(frozen=True, slots=True)
class UsedWeight:
    """The exchange's own count of this IP's request weight in one window, e.g. 12 in the 60 s window."""

    window_s: int
    window_id: int
    used: int


def when(epoch_s: float) -> str:
    return f"{datetime.fromtimestamp(epoch_s, UTC):%Y-%m-%d %H:%M:%S}Z"


class ExchangeGate:
    def __init__(
        self,
        state_file: Path | None = None,
        *,
        budget_fraction: float = 0.9,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state_file = state_file
        self.budget_fraction = budget_fraction
        self.clock = clock
        self.banned_until = self._load_ban()
        self.paused_until = 0.0
        self.limits: dict[int, int] = {}  # window seconds -> weight limit, from exchangeInfo
        self.weights: dict[int, UsedWeight] = {}  # window seconds -> the latest count the exchange reported
        self.in_flight = 0

    # ---- before and after each request

    async def enter(self, deadline: float, what: str) -> None:
        """Wait until a request may go (never past ``deadline``), or raise NotSentError saying why not."""
        while True:
            now = self.clock()
            resume, reason = self._hold(now)
            if resume is None:
                self.in_flight += 1
                return
            if resume > deadline:
                raise NotSentError(what, reason)
            await asyncio.sleep(resume - now)

    def leave(self, headers: Mapping[str, str] | None) -> None:
        self.in_flight -= 1
        for name, value in (headers or {}).items():
            match = _WEIGHT_HEADER.fullmatch(name)
            if match and value.isdigit():
                window = int(match[1]) * _SECONDS[match[2].lower()]
                self.weights[window] = UsedWeight(window, int(self.clock() // window), int(value))

    # ---- what the exchange told us

    def set_limits(self, rate_limits: object) -> None:
        """``exchangeInfo``'s ``rateLimits``: keep the REQUEST_WEIGHT ones."""
        if not isinstance(rate_limits, list):
            return
        for limit in rate_limits:
            if isinstance(limit, dict) and limit.get("rateLimitType") == "REQUEST_WEIGHT":
                seconds = _SECONDS.get(str(limit.get("interval")))
                number, value = limit.get("intervalNum"), limit.get("limit")
                if seconds and isinstance(number, int) and isinstance(value, int):
                    self.limits[seconds * number] = value

    def pause(self, seconds: float | None, what: str) -> None:
        """A 429: nothing goes out for ``seconds`` (Retry-After), for any pair."""
        until = self.clock() + (seconds if seconds is not None else DEFAULT_PAUSE_S)
        if until > self.paused_until:
            self.paused_until = until
            log.warning("%s: rate limited (HTTP 429): sending nothing until %s", what, when(until))

    def ban(self, until: float | None, what: str) -> None:
        """A 418: nothing goes out until ``until``; said once, and kept across restarts."""
        until = until if until is not None else self.clock() + DEFAULT_BAN_S
        if self.banned_until is not None and until <= self.banned_until:
            return
        self.banned_until = until
        self._save_ban()
        log.error(
            "%s: the exchange banned this IP (HTTP 418) until %s; sending nothing until then, then resuming",
            what,
            when(until),
        )

    @property
    def used_weight(self) -> UsedWeight | None:
        """The latest count in the longest window the exchange reports (the 1-minute one in production)."""
        return self.weights[max(self.weights)] if self.weights else None

    # ---- internals

    def _hold(self, now: float) -> tuple[float | None, str]:
        """When a request may go (None: now) and why it must wait."""
        if self.banned_until is not None and now < self.banned_until:
            return self.banned_until, f"the exchange banned this IP until {when(self.banned_until)}"
        if now < self.paused_until:
            return self.paused_until, f"rate limited (HTTP 429) until {when(self.paused_until)}"
        for window, limit in self.limits.items():
            reported = self.weights.get(window)
            window_id = int(now // window)
            used = reported.used if reported is not None and reported.window_id == window_id else 0
            budget = math.floor(limit * self.budget_fraction)
            if used + self.in_flight + 1 > budget:
                resume = (window_id + 1) * window + _WINDOW_CUSHION_S
                reason = f"request weight {used} of {limit} used in the {window} s window (budget {budget})"
                return resume, reason
        return None, ""

    def _load_ban(self) -> float | None:
        if self.state_file is None or not self.state_file.exists():
            return None
        try:
            until = float(json.loads(self.state_file.read_text())["banned_until"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            log.warning("ignoring unreadable ban state %s: %s", self.state_file, error)
            return None
        if until > self.clock():
            log.error("exchange IP ban from an earlier run lasts until %s: sending nothing", when(until))
            return until
        return None

    def _save_ban(self) -> None:
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        until = self.banned_until or 0.0
        temporary.write_text(json.dumps({"banned_until": until, "until_utc": when(until)}))
        temporary.replace(self.state_file)
