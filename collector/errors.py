"""The errors oi-collector raises, one branch per boundary.

CollectorError
 ├── ConfigError        a bad config file or env var: which key, from where (exit 2, before connecting)
 ├── ExchangeError      no rows from a venue: which scope, HTTP status, the venue's code and message
 │    ├── RetriableExchangeError   429, 418, 5xx, timeouts, refused/reset connections: worth another try
 │    └── FatalExchangeError       other 4xx, HTML pages, bodies that are not the JSON we expect
 └── SinkError          the database refused or is unreachable
     ├── DatabaseAway   it cannot take anything now (connection, schema, disk): keep the batch, retry later
     ├── RowsRefused    it refuses what the batch holds (data, constraints, encoding): find the rows, set
     │                  them aside, store the others
     └── SchemaError    the schema cannot be made what we need (timescaledb="require" without it)
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Literal

Hold = Literal["backoff", "pause", "ban"]


class CollectorError(Exception):
    """Root of every error oi-collector raises on purpose."""


class ConfigError(CollectorError):
    """A configuration value is missing, unknown or wrong; the message names the key and its source."""


class ExchangeError(CollectorError):
    """The exchange answered with something other than rows (or did not answer)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        exchange_message: str | None = None,
        retry_after_s: float | None = None,
        banned_until: datetime | None = None,
        hold: Hold = "backoff",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.exchange_message = exchange_message
        self.retry_after_s = retry_after_s
        self.banned_until = banned_until
        self.hold = (
            hold  # what the answer asks of us: back off and retry, pause every request, or stop (a ban)
        )
        self.attempts = 1

    def ban_end(self) -> float | None:
        """Epoch seconds of a ban's end: the later of Retry-After and the end the venue named; None if
        neither. (The venue's gate clamps it to the longest ban the venue documents.)"""
        ends = []
        if self.retry_after_s is not None:
            ends.append(time.time() + self.retry_after_s)
        if self.banned_until is not None:
            ends.append(self.banned_until.timestamp())
        return max(ends) if ends else None


class RetriableExchangeError(ExchangeError):
    """Trying again later may succeed: rate limits, bans, 5xx, network trouble."""


class NotSentError(RetriableExchangeError):
    """We held the request back: the IP is banned, rate-limited, or out of weight until past the deadline."""

    def __init__(self, what: str, reason: str) -> None:
        super().__init__(f"{what}: not sent: {reason}")
        self.reason = reason


class FatalExchangeError(ExchangeError):
    """Trying again will not help: a bad request, or a body we cannot read."""


class SinkError(CollectorError):
    """The database could not take the rows."""


class DatabaseAway(SinkError):
    """The database cannot take a write now, whatever it holds: unreachable, failing, schema not there."""


class RowsRefused(SinkError):
    """The database refuses what this batch holds (a data or constraint error, text it cannot encode)."""


class SchemaError(SinkError):
    """The database schema cannot be made what this version needs."""
