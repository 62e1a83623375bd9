"""Typed values that flow from normalise to the sink."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Side = Literal["call", "put"]


@dataclass(frozen=True, slots=True)
class Pair:
    """One (underlying, expiry) the exchange serves open interest for; expiry as the exchange's YYMMDD."""

    underlying: str
    expiry: str

    def __str__(self) -> str:
        return f"{self.underlying} {self.expiry}"


@dataclass(frozen=True, slots=True)
class OptionSymbol:
    """What a symbol such as ``BTC-251226-100000-C`` says."""

    underlying: str
    expiry: date
    strike: Decimal
    side: Side


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """One row of table ``open_interest``."""

    symbol: str
    ts: datetime
    underlying: str
    expiry: date
    strike: Decimal
    side: Side
    open_interest: Decimal
    open_interest_usd: Decimal
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    """A raw row we could not use: which symbol (when known), which field, and why."""

    symbol: str | None
    field: str
    reason: str

    def __str__(self) -> str:
        return f"symbol {self.symbol or '?'}: field {self.field!r} {self.reason}"


RunStatus = Literal["ok", "partial", "failed", "spooled"]


@dataclass(frozen=True, slots=True)
class PairRun:
    """One row of table ``collection_runs``: what one cycle did for one pair."""

    cycle_start: datetime
    underlying: str
    expiry: date
    status: RunStatus
    snapshot_ts: datetime | None  # the exchange minute stored; None when nothing was
    rows_stored: int
    rows_rejected: int
    http_status: int | None
    error_code: int | None
    error_message: str | None
    duration_ms: int


@dataclass(frozen=True, slots=True)
class Batch:
    """What one cycle hands to the sink: the rows and the journal of how they were fetched."""

    runs: list[PairRun]
    records: list[OpenInterest]
