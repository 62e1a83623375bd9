"""Typed values that flow from normalise to the sink."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

Side = Literal["call", "put"]
MAX_TEXT_CHARS = 500  # what the journal keeps of a venue's error message or of a rejection's reason
INT32 = 2**31 - 1  # the journal's integer columns
_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_text(text: str, limit: int = MAX_TEXT_CHARS) -> str:
    """Text a venue sent, made safe for a log line and a text column: no NUL or control characters, no lone
    surrogates (which UTF-8 cannot encode), at most ``limit`` characters."""
    if len(text) > limit:
        text = f"{text[:limit]}… ({len(text)} characters)"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match[0]):02x}", text)


def shown(value: object, limit: int = 40) -> str:
    """A short, safe repr of a value a venue sent, for a message about it."""
    try:
        text = repr(value) if not isinstance(value, str) or len(value) <= limit else repr(value[:limit])
    except Exception:  # a repr that recurses too deep, say: the message must not fail
        text = f"<{type(value).__name__}>"
    if isinstance(value, str | list | dict) and len(value) > limit:
        text += f"… ({len(value)} {'characters' if isinstance(value, str) else 'items'})"
    return clean_text(text, limit + 40)


def _clean(record: object, **limits: int) -> None:
    """clean_text on these text fields of a frozen record (None stays None)."""
    for name, limit in limits.items():
        value = getattr(record, name)
        if isinstance(value, str):
            object.__setattr__(record, name, clean_text(value, limit))


def bounded_code(code: object) -> int | None:
    """A venue's error code as the journal's integer column holds it; None when it is no int32."""
    if isinstance(code, int) and not isinstance(code, bool) and -INT32 - 1 <= code <= INT32:
        return code
    return None


@dataclass(frozen=True, slots=True, order=True)
class Scope:
    """What one request to a venue covers: Binance one (underlying, expiry), Deribit a currency, OKX an
    instrument family, Bybit a base coin. ``label`` is the venue's own name for it, for people."""

    venue: str
    label: str
    underlying: str | None = None
    expiry: date | None = None

    def __str__(self) -> str:
        return f"{self.venue} {self.label}"


@dataclass(frozen=True, slots=True)
class OpenInterest:
    """One row of table ``open_interest``: one option's open interest at one venue, at the venue's own time.

    ``open_interest`` is in units of the base coin, as served; ``open_interest_usd`` the venue's own USD value
    (None where it serves none: never computed here); ``underlying_price`` the price the venue served beside
    it (its underlying or index price), for a USD estimate."""

    venue: str
    symbol: str
    ts: datetime
    underlying: str
    expiry: date
    strike: Decimal
    side: Side
    open_interest: Decimal
    open_interest_usd: Decimal | None
    underlying_price: Decimal | None
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class Rejection:
    """A raw row we could not use: which symbol (when known), which field, and why."""

    symbol: str | None
    field: str
    reason: str

    def __post_init__(self) -> None:
        # The reason quotes what the venue sent: it goes to logs and to the journal, so it is made safe here.
        _clean(self, symbol=80, field=80, reason=MAX_TEXT_CHARS)

    def __str__(self) -> str:
        return f"symbol {self.symbol or '?'}: field {self.field!r} {self.reason}"


RunStatus = Literal["ok", "partial", "failed", "spooled"]


@dataclass(frozen=True, slots=True)
class PairRun:
    """One row of table ``collection_runs``: what one cycle did for one scope of one venue."""

    cycle_start: datetime
    venue: str
    scope: str
    underlying: str | None
    expiry: date | None
    status: RunStatus
    snapshot_ts: datetime | None  # the exchange minute stored; None when nothing was
    rows_stored: int
    rows_rejected: int
    http_status: int | None
    error_code: int | None
    error_message: str | None
    duration_ms: int

    def __post_init__(self) -> None:
        # What a venue said goes into the journal's columns: bounded and encodable, whatever it was.
        _clean(self, error_message=MAX_TEXT_CHARS)
        object.__setattr__(self, "error_code", bounded_code(self.error_code))


RejectionStage = Literal["normalise", "database", "spool"]


@dataclass(frozen=True, slots=True)
class RejectedRow:
    """One row of table ``rejected_rows``: something a venue served (or the spool held) that was not stored,
    and why. ``stage`` says who refused it: normalise (the row), the database (its content), or the spool (an
    unreadable file); ``ordinal`` tells apart the rejections of one pair in one cycle."""

    cycle_start: datetime
    venue: str | None  # None for a spool file: whose rows it held could not be read
    underlying: str | None
    expiry: date | None
    stage: RejectionStage
    ordinal: int
    symbol: str | None
    field: str
    reason: str

    def __post_init__(self) -> None:
        _clean(self, symbol=80, underlying=80, field=80, reason=MAX_TEXT_CHARS)


@dataclass(frozen=True, slots=True)
class Batch:
    """What one cycle hands to the sink: the rows and the journal of how they were fetched."""

    runs: list[PairRun]
    records: list[OpenInterest]
    rejections: list[RejectedRow] = field(default_factory=list)

    @property
    def size(self) -> int:
        return len(self.runs) + len(self.records) + len(self.rejections)

    def halves(self) -> tuple[Batch, Batch]:
        """Two batches with half of this one's items each (to find the ones a database refuses)."""
        items: list[PairRun | OpenInterest | RejectedRow] = [*self.runs, *self.records, *self.rejections]
        middle = len(items) // 2
        return _batch_of(items[:middle]), _batch_of(items[middle:])

    @property
    def only_item(self) -> PairRun | OpenInterest | RejectedRow:
        items: list[PairRun | OpenInterest | RejectedRow] = [*self.runs, *self.records, *self.rejections]
        if len(items) != 1:
            raise ValueError(f"a batch of {len(items)} items has no only item")
        return items[0]


def _batch_of(items: list[PairRun | OpenInterest | RejectedRow]) -> Batch:
    return Batch(
        [item for item in items if isinstance(item, PairRun)],
        [item for item in items if isinstance(item, OpenInterest)],
        [item for item in items if isinstance(item, RejectedRow)],
    )
