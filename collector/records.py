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
