"""Binance options (eapi): what it lists, how to ask one pair's open interest, and how it answers.

Knows the URLs, parameters, status codes, the ``{"code", "msg"}`` error JSON, the 418 ban and the 429
pause (the weight headers are read by the gate), the symbols (``BTC-251226-100000-C``: expiry as ``YYMMDD``)
and the rows (every value a string; ``timestamp`` on the whole minute, as Binance recomputes once a
minute). One scope is one (underlying, expiry) pair, one request each; ``exchangeInfo`` lists the pairs.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx

from collector.config import BinanceSettings
from collector.errors import FatalExchangeError
from collector.normalise import (
    SIDES,
    FieldError,
    Normalised,
    keep_rows,
    match_symbol,
    parse_expiry,
    parse_quantity,
    read_field,
    row_and_symbol,
    venue_time,
)
from collector.records import OpenInterest, Rejection, Scope, Side
from collector.venues.base import Fetched, Scopes, Unlisted
from collector.venues.gate import ExchangeGate
from collector.venues.http import VenueHttp, decode_json, failure, venue_error

NAME = "binance"
EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
log = logging.getLogger("collector.exchange")
_BANNED_UNTIL = re.compile(r"banned until ([0-9]{12,})")
_LAST_DATETIME_S = 253_402_300_799  # 9999-12-31 23:59:59 UTC: the last moment a datetime can hold
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE = timedelta(minutes=1)
NO_LISTING = "the exchange's listing (exchangeInfo) is unavailable, so there is nothing to poll"


@dataclass(frozen=True, slots=True)
class Pair:
    """One (underlying, expiry) Binance serves open interest for; expiry as its ``YYMMDD``."""

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


def scope(underlying: str, expiry: str) -> Scope:
    """Binance's scope for one pair, ``expiry`` as the exchange's YYMMDD ("": every expiry of it)."""
    if not expiry:
        return Scope(NAME, underlying, underlying)
    return Scope(NAME, f"{underlying} {expiry}", underlying, parse_expiry(expiry))


def _unlisted(pair: Pair, listing: Listing | None) -> Unlisted:
    """Why a configured pair is not polled: its underlying, or that expiry of it, is not listed."""
    assert listing is not None
    expiries = sorted(listed.expiry for listed in listing.pairs if listed.underlying == pair.underlying)
    if not expiries:
        listed = ", ".join(sorted(listing.underlyings)) or "none"
        return Unlisted(
            scope(pair.underlying, pair.expiry), f"{pair.underlying} is not listed (listed: {listed})"
        )
    return Unlisted(
        scope(pair.underlying, pair.expiry),
        f"{pair} is not listed (expiries of {pair.underlying} listed: {', '.join(expiries)})",
    )


def pair_of(scope: Scope) -> Pair:
    assert scope.underlying is not None and scope.expiry is not None
    return Pair(scope.underlying, f"{scope.expiry:%y%m%d}")


@dataclass
class BinanceVenue:
    """The pairs to poll (from ``exchangeInfo`` or the configured expiries) and one pair's open interest."""

    http: VenueHttp
    settings: BinanceSettings
    name: str = NAME
    listing: Listing | None = field(default=None, init=False)

    @property
    def gate(self) -> ExchangeGate:
        return self.http.gate

    async def scopes(self) -> Scopes:
        """The pairs to poll, the configured ones Binance does not list, and why there are none."""
        try:
            listing: Listing | None = parse_listing(await self.exchange_info())
        except Exception as error:  # a listing that cannot be had costs the listing, not the cycle
            log.error("cannot read the exchange's listing: %s", error, extra={"venue": NAME})
            listing = None
        expiries = self.settings.expiries
        if listing is None and expiries is None:
            return Scopes([], (), NO_LISTING, listing_failed=True)
        underlyings = self.settings.underlyings
        if expiries is not None:
            wanted = [Pair(underlying, expiry) for underlying in underlyings for expiry in expiries]
        else:
            assert listing is not None
            wanted = sorted(
                (pair for pair in listing.pairs if pair.underlying in underlyings),
                key=lambda pair: (pair.underlying, pair.expiry),
            )
            wanted += [Pair(name, "") for name in underlyings if name not in listing.underlyings]
        pairs = [pair for pair in wanted if listing is None or pair in listing.pairs]
        unlisted = tuple(_unlisted(pair, listing) for pair in wanted if pair not in pairs)
        if unlisted:
            log.error(
                "configured but not listed by the exchange: %s; they fail every cycle until listed",
                "; ".join(entry.reason for entry in unlisted),
                extra={"venue": NAME, "unlisted": [entry.scope.label for entry in unlisted]},
            )
        scopes = [scope(pair.underlying, pair.expiry) for pair in pairs]
        return Scopes(
            scopes, unlisted, None if scopes or unlisted else "no (underlying, expiry) pair to poll"
        )

    async def exchange_info(self) -> object:
        body = (await self.http.get(EXCHANGE_INFO, {}, "exchangeInfo")).body
        if isinstance(body, dict):
            self.gate.set_limits(body.get("rateLimits"))
        return body

    async def fetch(self, scope: Scope) -> Fetched:
        pair = pair_of(scope)
        params = {"underlyingAsset": pair.underlying, "expiration": pair.expiry}
        answer = await self.http.get(OPEN_INTEREST, params, f"openInterest {pair}")
        received_at = datetime.now(UTC)
        if not isinstance(answer.body, list):
            kind = type(answer.body).__name__
            raise FatalExchangeError(f"openInterest {pair}: expected a JSON array, got {kind}", status=200)
        normalised: Normalised = normalise_rows(answer.body, received_at, pair)
        return Fetched(normalised.records, normalised.rejections, answer.attempts, empty=not answer.body)


def parse_response(response: httpx.Response, what: str) -> object:
    """The JSON body of a good answer, or the ExchangeError that says exactly what came back.

    The one place where Binance's HTTP status maps to an error class: 429, 418 and 5xx are retriable, every
    other non-2xx is fatal, and so is a 2xx that is not JSON or is the exchange's ``{"code", "msg"}`` error.
    """
    body = decode_json(response.content)
    code, message = error = _exchange_error(body)
    status = response.status_code
    if response.is_success and body is not None and code is None:
        return body
    raise failure(
        response,
        what,
        NAME,
        body,
        error,
        retriable=status in (418, 429) or status >= 500,
        hold="ban" if status == 418 else "pause" if status == 429 else "backoff",
        banned_until=_banned_until(message),
    )


def _exchange_error(body: object) -> tuple[int | None, str | None]:
    """The exchange's ``{"code", "msg"}``, the code bounded to what the journal holds, the text made safe."""
    if isinstance(body, dict) and "code" in body and "msg" in body:
        return venue_error(body["code"], body["msg"])
    return None, None


def _banned_until(message: str | None) -> datetime | None:
    """``banned until <ms>`` in the message, as an aware datetime (at most the last one a datetime holds)."""
    match = _BANNED_UNTIL.search(message or "")
    if not match:
        return None
    seconds = int(match[1][:16]) / 1000 if len(match[1]) <= 16 else _LAST_DATETIME_S
    return datetime.fromtimestamp(min(seconds, _LAST_DATETIME_S), UTC)


# ---- the rows and the listing

_SYMBOL = re.compile(
    r"(?P<underlying>[A-Z0-9]+)-(?P<expiry>[0-9]{6})-(?P<strike>[0-9]+(?:\.[0-9]+)?)-(?P<side>[CP])"
)
_SYMBOL_UNDERLYING = re.compile(r"[A-Z0-9]{1,20}")


class SymbolError(ValueError):
    """A symbol that is not ``UNDERLYING-YYMMDD-STRIKE-C|P``."""


def parse_symbol(symbol: str) -> OptionSymbol:
    """``BTC-251226-100000-C`` → its underlying, expiry, strike and side."""
    try:
        match = match_symbol(symbol, _SYMBOL, "UNDERLYING-YYMMDD-STRIKE-C|P")
    except ValueError as error:
        raise SymbolError(str(error)) from None
    try:
        expiry = parse_expiry(match["expiry"])
        strike = parse_quantity(match["strike"])
    except ValueError as error:
        raise SymbolError(f"{symbol!r}: {error}") from None
    return OptionSymbol(match["underlying"], expiry, strike, SIDES[match["side"]])


def _snapshot_time(received_at: datetime) -> Callable[[object], datetime]:
    """venue_time, and on a whole minute: Binance recomputes open interest once a minute."""
    read = venue_time(received_at)

    def parse(value: object) -> datetime:
        ts = read(value)
        if ts - _EPOCH != (ts - _EPOCH) // _MINUTE * _MINUTE:
            raise ValueError(
                f"{ts:%Y-%m-%d %H:%M:%S.%f}Z is not on a whole minute, as Binance's snapshots are"
            )
        return ts

    return parse


def normalise_row(row: object, collected_at: datetime) -> OpenInterest | Rejection:
    """A raw ``openInterest`` row received at ``collected_at`` → a record, or a rejection naming the field."""
    start = row_and_symbol(row, "symbol")
    if isinstance(start, Rejection):
        return start
    fields, symbol = start
    try:
        parsed = parse_symbol(symbol)
        ts = read_field(fields, "timestamp", _snapshot_time(collected_at))
        open_interest = read_field(fields, "sumOpenInterest", parse_quantity)
        open_interest_usd = read_field(fields, "sumOpenInterestUsd", parse_quantity)
    except SymbolError as error:
        return Rejection(symbol, "symbol", str(error))
    except FieldError as error:
        return Rejection(symbol, error.field, error.reason)
    return OpenInterest(
        venue=NAME,
        symbol=symbol,
        ts=ts,
        underlying=parsed.underlying,
        expiry=parsed.expiry,
        strike=parsed.strike,
        side=parsed.side,
        open_interest=open_interest,
        open_interest_usd=open_interest_usd,
        underlying_price=None,  # Binance serves the USD value itself, and no price beside it
        collected_at=collected_at,
    )


def normalise_rows(rows: Iterable[object], collected_at: datetime, pair: Pair) -> Normalised:
    """Every row of one answer to ``pair``'s request: good rows kept, bad rows rejected one by one.

    A row must belong to the pair asked for (a row of another expiry could overwrite the value stored from
    its own answer), and a symbol is kept once. Whatever one row can raise costs only that row.
    """
    expiry = parse_expiry(pair.expiry)

    def parse(row: object) -> OpenInterest | Rejection:
        record = normalise_row(row, collected_at)
        if isinstance(record, OpenInterest) and (record.underlying, record.expiry) != (
            pair.underlying,
            expiry,
        ):
            reason = f"is of {record.underlying} {record.expiry:%y%m%d}, not of the pair asked for ({pair})"
            return Rejection(record.symbol, "symbol", reason)
        return record

    return keep_rows(rows, parse, "symbol")


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
        try:
            pair = _listed_pair(entry, base_assets)
        except Exception:  # one listed entry costs only itself, whatever it breaks
            pair = None
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
        expiry = expiry_code(expiry_ms)
        parse_expiry(expiry)
    except (OverflowError, ValueError, OSError):
        return None
    return Pair(underlying, expiry) if _SYMBOL_UNDERLYING.fullmatch(underlying) else None
