"""Raw exchange rows → typed records. Pure: no I/O, no clock, no logging."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from collector.records import OpenInterest, OptionSymbol, Pair, Rejection, Side

_SYMBOL = re.compile(
    r"(?P<underlying>[A-Z0-9]+)-(?P<expiry>[0-9]{6})-(?P<strike>[0-9]+(?:\.[0-9]+)?)-(?P<side>[CP])"
)
_SIDES: dict[str, Side] = {"C": "call", "P": "put"}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXPIRY = re.compile(r"[0-9]{6}")
_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # how the exchange writes quantities: no sign, no exponent
T = TypeVar("T")


class SymbolError(ValueError):
    """A symbol that is not ``UNDERLYING-YYMMDD-STRIKE-C|P``."""


@dataclass(frozen=True, slots=True)
class Normalised:
    """What one response became: records to store and rows we had to reject."""

    records: list[OpenInterest]
    rejections: list[Rejection]


def parse_expiry(text: str) -> date:
    """``YYMMDD`` → date; ValueError when it is not six digits of a real date."""
    if not _EXPIRY.fullmatch(text):
        raise ValueError(f"expiry {text!r} is not YYMMDD")
    try:
        return date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise ValueError(f"expiry {text!r} is not a real date") from None


def parse_symbol(symbol: str) -> OptionSymbol:
    """``BTC-251226-100000-C`` → its underlying, expiry, strike and side."""
    match = _SYMBOL.fullmatch(symbol)
    if match is None:
        raise SymbolError(f"{symbol!r} is not UNDERLYING-YYMMDD-STRIKE-C|P")
    try:
        expiry = parse_expiry(match["expiry"])
    except ValueError as error:
        raise SymbolError(f"{symbol!r}: {error}") from None
    return OptionSymbol(match["underlying"], expiry, Decimal(match["strike"]), _SIDES[match["side"]])


def parse_timestamp_ms(text: object) -> datetime:
    """Milliseconds since the epoch, as the exchange's string → aware UTC datetime (exact, no float)."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        text = str(text)
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(f"{text!r} is not whole milliseconds since the epoch")
    try:
        return _EPOCH + timedelta(milliseconds=int(text))
    except OverflowError:
        raise ValueError(f"{text!r} is out of range for a date") from None


def parse_quantity(text: object) -> Decimal:
    """A non-negative decimal string such as ``"4.01"`` → Decimal, exactly as written."""
    if not isinstance(text, str):
        raise ValueError(f"{text!r} is not a decimal string")
    if not _DECIMAL.fullmatch(text):
        raise ValueError(f"{text!r} is not a non-negative decimal number")
    return Decimal(text)


class _FieldError(ValueError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def _field(row: Mapping[str, object], name: str, parse: Callable[[object], T]) -> T:
    if name not in row:
        raise _FieldError(name, "is missing")
    try:
        return parse(row[name])
    except ValueError as error:
        raise _FieldError(name, str(error)) from None


def normalise_row(row: object, collected_at: datetime) -> OpenInterest | Rejection:
    """A raw ``openInterest`` row received at ``collected_at`` → a record, or a rejection naming the field."""
    if not isinstance(row, Mapping):
        return Rejection(None, "row", f"is {type(row).__name__}, not an object")
    symbol = row.get("symbol")
    if not isinstance(symbol, str):
        return Rejection(None, "symbol", "is missing" if symbol is None else f"is {symbol!r}, not a string")
    try:
        parsed = parse_symbol(symbol)
        ts = _field(row, "timestamp", parse_timestamp_ms)
        open_interest = _field(row, "sumOpenInterest", parse_quantity)
        open_interest_usd = _field(row, "sumOpenInterestUsd", parse_quantity)
    except SymbolError as error:
        return Rejection(symbol, "symbol", str(error))
    except _FieldError as error:
        return Rejection(symbol, error.field, error.reason)
    return OpenInterest(
        symbol=symbol,
        ts=ts,
        underlying=parsed.underlying,
        expiry=parsed.expiry,
        strike=parsed.strike,
        side=parsed.side,
        open_interest=open_interest,
        open_interest_usd=open_interest_usd,
        collected_at=collected_at,
    )


def normalise_rows(rows: Iterable[object], collected_at: datetime) -> Normalised:
    """Every row of one response: good rows kept, bad rows rejected one by one."""
    records: list[OpenInterest] = []
    rejections: list[Rejection] = []
    for row in rows:
        result = normalise_row(row, collected_at)
        if isinstance(result, OpenInterest):
            records.append(result)
        else:
            rejections.append(result)
    return Normalised(records, rejections)


def expiry_code(expiry_date_ms: int) -> str:
    """``exchangeInfo``'s ``expiryDate`` (ms) → the ``YYMMDD`` that ``openInterest`` takes."""
    return (_EPOCH + timedelta(milliseconds=expiry_date_ms)).strftime("%y%m%d")


@dataclass(frozen=True, slots=True)
class Listing:
    """What ``exchangeInfo`` lists now: every (underlying, expiry) pair; how many entries were unreadable."""

    pairs: frozenset[Pair]
    unreadable: int

    @property
    def underlyings(self) -> frozenset[str]:
        return frozenset(pair.underlying for pair in self.pairs)


def parse_listing(exchange_info: object) -> Listing:
    """``exchangeInfo`` → the pairs to poll: (base asset, YYMMDD of ``expiryDate``) of every option symbol.

    The expiry comes from ``expiryDate``, never from the symbol text (the exchange's own advice).
    """
    if not isinstance(exchange_info, Mapping) or not isinstance(exchange_info.get("optionSymbols"), list):
        raise ValueError("exchangeInfo has no optionSymbols list")
    base_assets = _base_assets(exchange_info.get("optionContracts"))
    pairs: set[Pair] = set()
    unreadable = 0
    for entry in exchange_info["optionSymbols"]:
        pair = _listed_pair(entry, base_assets)
        if pair is None:
            unreadable += 1
        else:
            pairs.add(pair)
    return Listing(frozenset(pairs), unreadable)


def _base_assets(contracts: object) -> dict[str, str]:
    """``BTCUSDT`` → ``BTC``, from ``optionContracts``."""
    if not isinstance(contracts, list):
        return {}
    return {
        contract["underlying"]: contract["baseAsset"]
        for contract in contracts
        if isinstance(contract, Mapping)
        and isinstance(contract.get("underlying"), str)
        and isinstance(contract.get("baseAsset"), str)
    }


def _listed_pair(entry: object, base_assets: Mapping[str, str]) -> Pair | None:
    if not isinstance(entry, Mapping):
        return None
    expiry_ms, symbol = entry.get("expiryDate"), entry.get("symbol")
    if isinstance(expiry_ms, bool) or not isinstance(expiry_ms, int) or not isinstance(symbol, str):
        return None
    underlying = base_assets.get(str(entry.get("underlying")), symbol.partition("-")[0])
    try:
        return Pair(underlying, expiry_code(expiry_ms)) if underlying else None
    except (OverflowError, ValueError, OSError):
        return None
