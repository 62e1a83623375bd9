"""What every venue's rows share on their way to typed records: reading a field, exact numbers, the
venue's time, expiry dates, the bounds a value must keep, and the rule that one row costs only itself.

Pure: no I/O, no clock, no logging. Each venue's own grammar (symbols, field names, listings) lives in its
module in collector/venues/.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TypeVar

from collector.records import OpenInterest, Rejection, Side, shown

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EXPIRY = re.compile(r"[0-9]{6}")
_WHOLE = re.compile(r"[0-9]{1,15}")  # 15 digits of milliseconds reach the year 33658
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")  # how the exchange writes quantities: no sign, no exponent
T = TypeVar("T")

# Bounds at the boundary: what a venue can plausibly send, and what a numeric column can store and index.
MAX_SYMBOL_CHARS = 64
MAX_INTEGER_DIGITS = 30  # 10^30 coins or dollars: far beyond any real open interest or strike
MAX_FRACTION_DIGITS = 30
FIRST_EXPIRY = date(2016, 1, 1)  # no crypto option expired before this: 000101 is not 2000-01-01
MAX_AHEAD = timedelta(minutes=5)  # a snapshot from the future beyond clock skew is not believed
MAX_BEHIND = timedelta(days=1)  # venues answer "now": older is a stale cache, or seconds taken for ms


SIDES: dict[str, Side] = {"C": "call", "P": "put"}  # how every venue writes the side in a symbol


def match_symbol(symbol: str, grammar: re.Pattern[str], shape: str) -> re.Match[str]:
    """``grammar``'s match of a venue's whole symbol, or ValueError saying the symbol is not ``shape`` (or is
    too long to be one: its size is said, not its text)."""
    if len(symbol) > MAX_SYMBOL_CHARS:
        raise ValueError(
            f"{shown(symbol)} has {len(symbol)} characters; at most {MAX_SYMBOL_CHARS} are accepted"
        )
    match = grammar.fullmatch(symbol)
    if match is None:
        raise ValueError(f"{shown(symbol)} is not {shape}")
    return match


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
        expiry = date(2000 + int(text[:2]), int(text[2:4]), int(text[4:]))
    except ValueError:
        raise ValueError(f"expiry {text!r} is not a real date") from None
    if expiry < FIRST_EXPIRY:
        raise ValueError(f"expiry {text!r} is before any crypto option was listed ({FIRST_EXPIRY:%Y})")
    return expiry


_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}
_DMMMYY = re.compile(r"([0-9]{1,2})([A-Z]{3})([0-9]{2})")


def parse_dmmmyy(text: str) -> date:
    """``27JUN25`` / ``5AUG23`` (Deribit's and Bybit's expiry) → date; ValueError when it is not one."""
    match = _DMMMYY.fullmatch(text)
    if match is None or match[2] not in _MONTHS:
        raise ValueError(f"expiry {shown(text)} is not DMMMYY")
    try:
        expiry = date(2000 + int(match[3]), _MONTHS[match[2]], int(match[1]))
    except ValueError:
        raise ValueError(f"expiry {text!r} is not a real date") from None
    if expiry < FIRST_EXPIRY:
        raise ValueError(f"expiry {text!r} is before any crypto option was listed ({FIRST_EXPIRY:%Y})")
    return expiry


def parse_timestamp_ms(text: object) -> datetime:
    """Milliseconds since the epoch, as the exchange's string → aware UTC datetime (exact, no float)."""
    if isinstance(text, int) and not isinstance(text, bool) and 0 <= text < 10**15:
        text = str(text)
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise ValueError(f"{shown(text)} is not whole milliseconds since the epoch")
    try:
        return _EPOCH + timedelta(milliseconds=int(text))
    except OverflowError:
        raise ValueError(f"{text!r} is out of range for a date") from None


def parse_quantity(text: object) -> Decimal:
    """A non-negative decimal string such as ``"4.01"`` → Decimal, exactly as written."""
    if not isinstance(text, str):
        raise ValueError(f"{shown(text)} is not a decimal string")
    if _DECIMAL.fullmatch(text) is None:
        raise ValueError(f"{shown(text)} is not a non-negative decimal number")
    return _within_digits(Decimal(text), text)


def parse_number(value: object) -> Decimal:
    """A non-negative number a venue sent as a JSON number (decoded as Decimal, never as float) → Decimal,
    exactly; with the same bounds as ``parse_quantity``."""
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise ValueError(f"{shown(value)} is not a number (decoded exactly)")
    number = Decimal(value)
    if not number.is_finite() or number < 0:
        raise ValueError(f"{shown(value)} is not a non-negative finite number")
    return _within_digits(number, value)


def _within_digits(number: Decimal, served: object) -> Decimal:
    """``number`` unless it has more than MAX_INTEGER_DIGITS before the point or MAX_FRACTION_DIGITS after
    (counted from its exponent: a value like 1E999999999 is never written out)."""
    exponent = number.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    whole = max(number.adjusted() + 1, 1)
    fraction = max(-exponent, 0)
    if whole > MAX_INTEGER_DIGITS or fraction > MAX_FRACTION_DIGITS:
        raise ValueError(
            f"{shown(served)} has {whole} digits before the point and {fraction} after;"
            f" at most {MAX_INTEGER_DIGITS} and {MAX_FRACTION_DIGITS} are accepted"
        )
    return number


def check_venue_time(ts: datetime, received_at: datetime) -> None:
    """ValueError unless ``ts`` is within a sane distance of our clock: not more than MAX_AHEAD ahead of it,
    nor MAX_BEHIND behind (a venue answers "now")."""
    if ts > received_at + MAX_AHEAD:
        raise ValueError(f"{ts:%Y-%m-%d %H:%M}Z is {ts - received_at} ahead of our clock")
    if ts < received_at - MAX_BEHIND:
        hint = " (seconds sent for milliseconds?)" if ts.year < 2000 else ""
        raise ValueError(f"{ts:%Y-%m-%d %H:%M}Z is {received_at - ts} behind our clock{hint}")


class FieldError(ValueError):
    """One field of a row that cannot be used: which, and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


def read_field(
    row: Mapping[str, object], name: str, parse: Callable[[object], T], *, required: bool = True
) -> T:
    """``parse(row[name])``, or FieldError naming the field when ``parse`` refuses it or it is missing and
    ``required`` (when it is not, ``parse`` gets None)."""
    if required and name not in row:
        raise FieldError(name, "is missing")
    try:
        return parse(row.get(name))
    except ValueError as error:
        raise FieldError(name, str(error)) from None


def row_and_symbol(row: object, symbol_field: str) -> tuple[Mapping[str, object], str] | Rejection:
    """A raw row as a mapping and its symbol text, or the rejection saying why it has neither."""
    if not isinstance(row, Mapping):
        return Rejection(None, "row", f"is {type(row).__name__}, not an object")
    symbol = row.get(symbol_field)
    if not isinstance(symbol, str):
        reason = "is missing" if symbol is None else f"is {shown(symbol)}, not a string"
        return Rejection(None, symbol_field, reason)
    return row, symbol


def optional(parse: Callable[[object], T]) -> Callable[[object], T | None]:
    """``parse``, with null (and an empty string, how some venues write "none") read as None."""

    def parse_optional(value: object) -> T | None:
        return None if value is None or value == "" else parse(value)

    return parse_optional


def venue_time(received_at: datetime) -> Callable[[object], datetime]:
    """A parser of ms since the epoch that also checks the time against our clock (check_venue_time)."""

    def parse(value: object) -> datetime:
        ts = parse_timestamp_ms(value)
        check_venue_time(ts, received_at)
        return ts

    return parse


def keep_rows(
    rows: Iterable[object], parse: Callable[[object], OpenInterest | Rejection], symbol_field: str
) -> Normalised:
    """Every row of one answer through ``parse`` (one venue's), with the rules every venue shares: whatever
    one row raises rejects that row only, and a symbol served twice is kept once (the first)."""
    records: list[OpenInterest] = []
    rejections: list[Rejection] = []
    seen: set[str] = set()
    for row in rows:
        try:
            result = parse(row)
        except Exception as error:  # the rule: one row costs only itself, whatever it breaks
            reason = f"cannot be read ({type(error).__name__}: {error})"
            result = Rejection(_text_field(row, symbol_field), "row", reason)
        if isinstance(result, OpenInterest) and result.symbol in seen:
            result = Rejection(
                result.symbol, symbol_field, "appears twice in this answer: the first row is kept"
            )
        if isinstance(result, OpenInterest):
            seen.add(result.symbol)
            records.append(result)
        else:
            rejections.append(result)
    return Normalised(records, rejections)


def _text_field(row: object, name: str) -> str | None:
    try:
        value = row.get(name) if isinstance(row, Mapping) else None
    except Exception:  # the row that just broke the parser may break this too
        return None
    return value if isinstance(value, str) else None
