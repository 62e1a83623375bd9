"""What every request to a venue must pass: an IP ban, a rate-limit pause, and the request-weight budget.

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
from typing import TypeGuard

from collector.deadline import Deadline
from collector.errors import NotSentError
from collector.records import clean_text

log = logging.getLogger("collector.exchange")
_WEIGHT_HEADER = re.compile(r"x-mbx-used-weight-([0-9]{1,6})([smhd])", re.IGNORECASE)
_COUNT = re.compile(r"[0-9]{1,9}")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
DEFAULT_BAN_S = 120.0  # the exchange's shortest ban, for a 418 that says nothing of its length
MAX_BAN_S = 3 * 86400.0  # the exchange's longest ban: a header claiming more is not believed
DEFAULT_PAUSE_S = 5.0  # a 429 without Retry-After
# A 429 is about the 1-minute request-weight window: five of them is the longest pause believed. Were the
# exchange to mean longer, it would answer 418 next, and a ban is honoured for up to MAX_BAN_S.
MAX_PAUSE_S = 300.0
_WINDOW_CUSHION_S = 0.25  # resume a little after our clock says the window turned: clocks differ
_PROBE_WAIT_S = 0.05  # how often requests held behind the probe look again


@dataclass(frozen=True, slots=True)
class UsedWeight:
    """The exchange's own count of this IP's request weight in one window, e.g. 12 in the 60 s window."""

    window_s: int
    window_id: int
    used: int


def when(epoch_s: float) -> str:
    """A moment for a log line; never fails, whatever the number."""
    try:
        return f"{datetime.fromtimestamp(epoch_s, UTC):%Y-%m-%d %H:%M:%S}Z"
    except (OverflowError, ValueError, OSError):
        return f"{epoch_s!r} s after the epoch"


def _plausible(value: object, low: int, high: int) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


@dataclass(frozen=True, slots=True)
class GateRules:
    """What one venue documents of its bans and pauses (Binance's by default)."""

    venue: str = "binance"
    default_ban_s: float = DEFAULT_BAN_S
    max_ban_s: float = MAX_BAN_S
    max_pause_s: float = MAX_PAUSE_S
    ban_status: int = 418  # the status a ban is answered with

    @property
    def longest_ban(self) -> str:
        days = self.max_ban_s / 86400
        return f"{days:g} days" if days >= 1 else f"{self.max_ban_s / 60:g} minutes"


class ExchangeGate:
    """One per venue and process, shared by every cycle: a ban at one venue never holds another."""

    def __init__(
        self,
        state_file: Path | None = None,
        *,
        rules: GateRules = GateRules(),
        budget_fraction: float = 0.9,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rules = rules
        self.state_file = state_file
        self.budget_fraction = budget_fraction
        self.clock = clock
        self.banned_until = self._load_ban()
        # After a ban, one request goes alone first: the full fan-out into a ban that is not over would
        # lengthen it.
        self.probe_needed = self.banned_until is not None
        self.probing = False
        self.paused_until = 0.0
        self.limits: dict[int, int] = {}  # window seconds -> weight limit, from exchangeInfo
        self.weights: dict[int, UsedWeight] = {}  # window seconds -> the latest count the exchange reported
        self.in_flight = 0
        self._ignored_headers: set[str] = set()

    # ---- before and after each request

    async def enter(self, deadline: Deadline | float, what: str) -> bool:
        """Wait until a request may go (never past ``deadline``), or raise NotSentError saying why not.
        True when this request is the probe after a ban: pass that to ``leave``."""
        deadline = deadline if isinstance(deadline, Deadline) else Deadline(deadline)
        while True:
            now = self.clock()
            resume, reason = self._hold(now)
            if resume is None:
                self.in_flight += 1
                probe = self.probe_needed
                self.probing = probe
                return probe
            if resume > deadline.at:
                raise NotSentError(what, reason)
            await asyncio.sleep(min(resume - now, 1.0))  # a cut deadline is seen within a second

    def leave(
        self, headers: Mapping[str, str] | None, status: int | None = None, *, probe: bool = False
    ) -> None:
        """After a request: count it out, read the weight headers; never raises, whatever the headers say."""
        self.in_flight -= 1
        if probe:
            self._probe_answered(status)
        for name, value in (headers or {}).items():
            try:
                self._read_weight(name, value)
            except Exception as error:  # one header costs only itself
                self._ignore_header(name, value, f"{type(error).__name__}: {error}")

    def _probe_answered(self, status: int | None) -> None:
        self.probing = False
        if status is None or status == self.rules.ban_status:  # no answer: probe again; a ban: ban() follows
            return
        self.probe_needed = False
        log.info(
            "%s answered the first request after the ban (HTTP %d): resuming every scope",
            self.rules.venue,
            status,
            extra={"http_status": status},
        )

    def _read_weight(self, name: str, value: str) -> None:
        match = _WEIGHT_HEADER.fullmatch(name)
        if match is None:
            return
        window = int(match[1]) * _SECONDS[match[2].lower()]
        if window == 0 or not _COUNT.fullmatch(value.strip()):
            self._ignore_header(name, value, "not a window and a count of weight")
            return
        self.weights[window] = UsedWeight(window, int(self.clock() // window), int(value))

    def _ignore_header(self, name: str, value: str, why: str) -> None:
        if name.lower() in self._ignored_headers:
            return
        self._ignored_headers.add(name.lower())
        log.warning(
            "ignoring %s's weight header %s: %s (%s); said once",
            self.rules.venue,
            clean_text(name, 80),
            clean_text(repr(value), 80),
            why,
            extra={"venue": self.rules.venue, "header": clean_text(name, 80)},
        )

    # ---- what the exchange told us

    def set_limits(self, rate_limits: object) -> None:
        """``exchangeInfo``'s ``rateLimits``: keep the REQUEST_WEIGHT ones."""
        if not isinstance(rate_limits, list):
            return
        for limit in rate_limits:
            if isinstance(limit, dict) and limit.get("rateLimitType") == "REQUEST_WEIGHT":
                interval = limit.get("interval")
                seconds = _SECONDS.get(interval) if isinstance(interval, str) else None
                number, value = limit.get("intervalNum"), limit.get("limit")
                # A limit no exchange would set (0, negative, a window of years) would silence every pair
                # for as long as one hostile listing says: only plausible limits are taken.
                if seconds and _plausible(number, 1, 1000) and _plausible(value, 1, 10**7):
                    self.limits[seconds * number] = value

    def pause(self, seconds: float | None, what: str, status: int | None = 429) -> None:
        """A rate limit: nothing goes out for ``seconds`` (Retry-After, at most the rules' longest pause)."""
        seconds = DEFAULT_PAUSE_S if seconds is None or not math.isfinite(seconds) else max(0.0, seconds)
        longest = self.rules.max_pause_s
        if seconds > longest:
            log.warning(
                "%s: a rate limit asked for a pause of %.0f s; pausing %.0f s, the most believed",
                what,
                seconds,
                longest,
                extra={"venue": self.rules.venue, "request": what, "pause_s": longest},
            )
            seconds = longest
        until = self.clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            log.warning(
                "%s: rate limited (HTTP %s): sending nothing until %s",
                what,
                status,
                when(until),
                extra={"venue": self.rules.venue, "http_status": status},
            )

    def ban(self, until: float | None, what: str, status: int | None = 418) -> None:
        """A ban: nothing goes out until ``until`` (at most the rules' longest ban away); said once, kept
        across restarts; then one probe request goes alone before every scope is asked again."""
        now = self.clock()
        until = now + self.rules.default_ban_s if until is None or not math.isfinite(until) else until
        if until > now + self.rules.max_ban_s:
            longest = self.rules.longest_ban
            log.warning(
                "%s: %s claims a ban until %s, longer than the %s it documents as the longest; taking %s",
                what,
                self.rules.venue,
                when(until),
                longest,
                longest,
                extra={"venue": self.rules.venue, "request": what},
            )
            until = now + self.rules.max_ban_s
        self.probe_needed = True
        if self.banned_until is not None and until <= self.banned_until:
            return
        self.banned_until = until
        self._save_ban()
        log.error(
            "%s: %s banned this IP (HTTP %s) until %s; sending nothing until then, then resuming",
            what,
            self.rules.venue,
            status,
            when(until),
            extra={"venue": self.rules.venue, "http_status": status},
        )

    @property
    def used_weight(self) -> UsedWeight | None:
        """The latest count in the longest window the exchange reports (the 1-minute one in production)."""
        return self.weights[max(self.weights)] if self.weights else None

    # ---- internals

    def _hold(self, now: float) -> tuple[float | None, str]:
        """When a request may go (None: now) and why it must wait."""
        if self.banned_until is not None and now < self.banned_until:
            return self.banned_until, f"{self.rules.venue} banned this IP until {when(self.banned_until)}"
        if self.probe_needed and self.probing:
            return now + _PROBE_WAIT_S, "waiting for the first request after the ban to be answered"
        if now < self.paused_until:
            return self.paused_until, f"rate limited by {self.rules.venue} until {when(self.paused_until)}"
        for window, limit in self.limits.items():
            reported = self.weights.get(window)
            window_id = int(now // window)
            used = reported.used if reported is not None and reported.window_id == window_id else 0
            budget = max(1, math.floor(limit * self.budget_fraction))
            if used + self.in_flight + 1 > budget:
                resume = (window_id + 1) * window + _WINDOW_CUSHION_S
                reason = f"request weight {used} of {limit} used in the {window} s window (budget {budget})"
                return resume, reason
        return None, ""

    def _load_ban(self) -> float | None:
        """A ban saved by an earlier run, at most MAX_BAN_S from now; an unreadable file is ignored."""
        if self.state_file is None:
            return None
        try:
            if not self.state_file.exists():
                return None
            until = float(json.loads(self.state_file.read_text())["banned_until"])
            if not math.isfinite(until):
                raise ValueError(f"{until} is not a time")
        except Exception as error:  # whatever the file holds, the start-up goes on
            log.warning(
                "ignoring unreadable ban state %s: %s",
                self.state_file,
                clean_text(str(error), 200),
                extra={"venue": self.rules.venue, "file": str(self.state_file)},
            )
            return None
        now = self.clock()
        if until > now + self.rules.max_ban_s:
            longest = self.rules.longest_ban
            log.warning(
                "ban state %s says %s, past the %s %s documents; taking %s",
                self.state_file,
                when(until),
                longest,
                self.rules.venue,
                longest,
                extra={"venue": self.rules.venue, "file": str(self.state_file)},
            )
            until = now + self.rules.max_ban_s
        if until > now:
            log.error(
                "%s IP ban from an earlier run lasts until %s: sending nothing",
                self.rules.venue,
                when(until),
                extra={"venue": self.rules.venue, "banned_until": when(until)},
            )
            return until
        return None

    def _save_ban(self) -> None:
        if self.state_file is None:
            return
        until = self.banned_until or 0.0
        try:
            self.state_file.parent.mkdir(parents=True, exist_ok=True)
            temporary = self.state_file.with_suffix(".tmp")
            temporary.write_text(json.dumps({"banned_until": until, "until_utc": when(until)}))
            temporary.replace(self.state_file)
        except OSError as error:
            log.error(
                "cannot save the ban state to %s (%s): the ban holds in this process only",
                self.state_file,
                error,
                extra={"venue": self.rules.venue, "file": str(self.state_file)},
            )
