"""Bybit options (v5): one ``market/tickers`` per base coin (BTC, ETH, SOL).

Knows the URL, the ``{"retCode", "retMsg", "result": {"list"}, "time"}`` envelope (``retCode`` checked on
every answer: failures come as HTTP 200 too), the IP ban (HTTP 403, at least 10 minutes), and the symbols:
USDC-settled ``BTC-27JUN25-100000-C`` and USDT-settled ``BTC-27JUN25-100000-C-USDT``, which can share base,
expiry, strike and side: the full symbol is the key. Row values are strings. Rows carry no time: ``ts`` is
the answer's ``time``, the same for every row of it. ``open_interest`` is ``openInterest`` (in the base coin);
Bybit serves no USD value for options, and ``underlying_price`` is the row's ``underlyingPrice``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx

from collector.errors import FatalExchangeError
from collector.normalise import (
    SIDES,
    FieldError,
    match_symbol,
    optional,
    parse_dmmmyy,
    parse_quantity,
    read_field,
    row_and_symbol,
    venue_time,
)
from collector.records import OpenInterest, Rejection, Scope, Side
from collector.venues.base import AskedByName, Fetched, rows_of
from collector.venues.http import decode_json, failure, venue_error

NAME = "bybit"
TICKERS = "/v5/market/tickers"
# A decimal strike would presumably be written with a point (unconfirmed): accepted, kept exact.
_SYMBOL = re.compile(
    r"(?P<base>[A-Z0-9]{1,20})-(?P<expiry>[0-9]{1,2}[A-Z]{3}[0-9]{2})"
    r"-(?P<strike>[0-9]{1,30}(?:\.[0-9]{1,30})?)-(?P<side>[CP])(?:-(?P<settle>[A-Z0-9]{2,10}))?"
)
TOO_MANY_VISITS = 10006  # the per-second limit: pause, then try again
_TRY_AGAIN = {10000, 10016}  # server timeout, server error (unconfirmed for public calls)
BANNED = 403  # "access too frequent": the IP is banned for at least 10 minutes


def scope(base_coin: str) -> Scope:
    return Scope(NAME, base_coin, base_coin)


@dataclass(frozen=True, slots=True)
class Contract:
    """What a symbol says; ``settle`` is USDC for the four-part symbols."""

    underlying: str
    expiry: date
    strike: Decimal
    side: Side
    settle: str


def parse_symbol(symbol: str) -> Contract:
    """``BTC-27JUN25-100000-C`` / ``BTC-27MAR26-70000-P-USDT`` → its parts; ValueError when neither."""
    match = match_symbol(symbol, _SYMBOL, "BASE-DMMMYY-STRIKE-C|P[-SETTLE]")
    expiry = parse_dmmmyy(match["expiry"])
    strike = parse_quantity(match["strike"])
    settle = match["settle"] or "USDC"
    return Contract(match["base"], expiry, strike, SIDES[match["side"]], settle)


def _of_coin(base_coin: str) -> Callable[[object], Contract]:
    def parse(symbol: object) -> Contract:
        contract = parse_symbol(str(symbol))
        if contract.underlying != base_coin:
            raise ValueError(f"is of {contract.underlying}, not of {base_coin}, the base coin asked for")
        return contract

    return parse


@dataclass
class BybitVenue(AskedByName):
    """One request per configured base coin; every option of the coin (both settle coins) in one answer."""

    name: str = NAME

    def scope(self, base_coin: str) -> Scope:
        return scope(base_coin)

    async def fetch(self, scope: Scope) -> Fetched:
        params = {"category": "option", "baseCoin": scope.label}
        what = f"tickers {scope.label}"
        answer = await self.http.get(TICKERS, params, what)
        received_at = datetime.now(UTC)
        envelope = answer.body if isinstance(answer.body, dict) else {}
        result = envelope.get("result")
        rows = result.get("list") if isinstance(result, dict) else None
        try:
            ts = read_field(envelope, "time", venue_time(received_at))
        except FieldError as error:  # no row can be dated: the answer fails, as one that is not JSON would
            raise FatalExchangeError(f"{what}: the answer's time {error.reason}", status=200) from None
        return rows_of(
            answer, rows, what, lambda row: normalise_row(row, scope.label, ts, received_at), "symbol"
        )


def normalise_row(
    row: object, base_coin: str, ts: datetime, received_at: datetime
) -> OpenInterest | Rejection:
    """One ticker of a coin's answer (dated ``ts``, the answer's time) → a record, or a rejection."""
    start = row_and_symbol(row, "symbol")
    if isinstance(start, Rejection):
        return start
    fields, symbol = start
    try:
        contract = read_field(fields, "symbol", _of_coin(base_coin))
        open_interest = read_field(fields, "openInterest", parse_quantity)
        price = read_field(fields, "underlyingPrice", optional(parse_quantity), required=False)
    except FieldError as error:
        return Rejection(symbol, error.field, error.reason)
    return OpenInterest(
        venue=NAME,
        symbol=symbol,
        ts=ts,
        underlying=contract.underlying,
        expiry=contract.expiry,
        strike=contract.strike,
        side=contract.side,
        open_interest=open_interest,
        open_interest_usd=None,  # Bybit serves none for options; an estimate is the view's
        underlying_price=price,
        collected_at=received_at,
    )


def parse_response(response: httpx.Response, what: str) -> object:
    """The whole envelope of a good answer (its ``time`` dates the rows), or the ExchangeError saying what
    came back: one place for Bybit's statuses and codes. 403 is the IP ban; 10006 and 429 pause; server
    errors and 5xx are retried; any other ``retCode`` is fatal."""
    body = decode_json(response.content)
    code, message = _bybit_error(body)
    status = response.status_code
    if response.is_success and code == 0:
        return body
    error = (None, None) if code == 0 else (code, message)
    pause = status == 429 or code == TOO_MANY_VISITS
    raise failure(
        response,
        what,
        NAME,
        body,
        error,
        retriable=status in (BANNED, 429) or status >= 500 or code in (TOO_MANY_VISITS, *_TRY_AGAIN),
        hold="ban" if status == BANNED else "pause" if pause else "backoff",
        otherwise="no retCode in the answer",
    )


def _bybit_error(body: object) -> tuple[int | None, str | None]:
    """Bybit's ``retCode`` (0 for success) and ``retMsg``; (None, None) without them."""
    if not isinstance(body, dict) or "retCode" not in body:
        return None, None
    return venue_error(body["retCode"], body.get("retMsg", ""))
