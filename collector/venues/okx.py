"""OKX options: one ``public/open-interest`` per instrument family (BTC-USD, ETH-USD).

Knows the URL, the ``{"code", "msg", "data"}`` envelope (``code`` a string, ``"0"`` for success, checked on
every answer, HTTP 200 included), its error codes, and the instrument ids (``BTC-USD-250627-100000-C``). Every
row value is a string. ``ts`` is the row's own ``ts``; ``open_interest`` is ``oiCcy`` (the base coin; ``oi``
counts contracts of 0.01 BTC or 0.1 ETH); ``open_interest_usd`` is ``oiUsd``, OKX's own USD value. The call
serves no price, so ``underlying_price`` is NULL.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx

from collector.normalise import (
    SIDES,
    FieldError,
    match_symbol,
    parse_expiry,
    parse_quantity,
    read_field,
    row_and_symbol,
    venue_time,
)
from collector.records import OpenInterest, Rejection, Scope, Side, shown
from collector.venues.base import AskedByName, Fetched, rows_of
from collector.venues.http import decode_json, failure, venue_error

NAME = "okx"
OPEN_INTEREST = "/api/v5/public/open-interest"
# A decimal strike would presumably be written with a point (unconfirmed): accepted, kept exact.
_INST_ID = re.compile(
    r"(?P<family>(?P<base>[A-Z0-9]{1,20})-[A-Z0-9]{1,10})-(?P<expiry>[0-9]{6})"
    r"-(?P<strike>[0-9]{1,30}(?:\.[0-9]{1,30})?)-(?P<side>[CP])"
)
RATE_LIMITED = 50011  # "Too Many Requests" / "Rate limit reached", on HTTP 429 or 200
_TRY_AGAIN = {50001, 50004, 50013}  # service unavailable, endpoint timeout, systems busy


def scope(family: str) -> Scope:
    return Scope(NAME, family, family.partition("-")[0])


@dataclass(frozen=True, slots=True)
class Instrument:
    """What an instrument id says."""

    family: str
    underlying: str
    expiry: date
    strike: Decimal
    side: Side


def parse_inst_id(inst_id: str) -> Instrument:
    """``BTC-USD-250627-100000-C`` → its parts; ValueError when it is not an option id."""
    match = match_symbol(inst_id, _INST_ID, "BASE-QUOTE-YYMMDD-STRIKE-C|P")
    expiry = parse_expiry(match["expiry"])
    strike = parse_quantity(match["strike"])
    return Instrument(match["family"], match["base"], expiry, strike, SIDES[match["side"]])


def _of_family(family: str) -> Callable[[object], Instrument]:
    def parse(inst_id: object) -> Instrument:
        instrument = parse_inst_id(str(inst_id))
        if instrument.family != family:
            raise ValueError(f"is of family {instrument.family}, not of {family}, the one asked for")
        return instrument

    return parse


def _option(value: object) -> str:
    if value != "OPTION":
        raise ValueError(f"is {shown(value)}, not OPTION")
    return "OPTION"


@dataclass
class OkxVenue(AskedByName):
    """One request per configured instrument family; every option of the family in one answer."""

    name: str = NAME

    def scope(self, family: str) -> Scope:
        return scope(family)

    async def fetch(self, scope: Scope) -> Fetched:
        params = {"instType": "OPTION", "instFamily": scope.label}
        what = f"open-interest {scope.label}"
        answer = await self.http.get(OPEN_INTEREST, params, what)
        received_at = datetime.now(UTC)
        return rows_of(
            answer, answer.body, what, lambda row: normalise_row(row, scope.label, received_at), "instId"
        )


def normalise_row(row: object, family: str, received_at: datetime) -> OpenInterest | Rejection:
    """One row of a family's answer → a record, or a rejection naming the field."""
    start = row_and_symbol(row, "instId")
    if isinstance(start, Rejection):
        return start
    fields, inst_id = start
    try:
        instrument = read_field(fields, "instId", _of_family(family))
        if "instType" in fields:
            read_field(fields, "instType", _option)
        ts = read_field(fields, "ts", venue_time(received_at))
        open_interest = read_field(fields, "oiCcy", parse_quantity)
        open_interest_usd = read_field(fields, "oiUsd", parse_quantity)
    except FieldError as error:
        return Rejection(inst_id, error.field, error.reason)
    return OpenInterest(
        venue=NAME,
        symbol=inst_id,
        ts=ts,
        underlying=instrument.underlying,
        expiry=instrument.expiry,
        strike=instrument.strike,
        side=instrument.side,
        open_interest=open_interest,
        open_interest_usd=open_interest_usd,
        underlying_price=None,  # this call serves no price; OKX's own USD value is served instead
        collected_at=received_at,
    )


def parse_response(response: httpx.Response, what: str) -> object:
    """The ``data`` of a good answer, or the ExchangeError saying what came back: one place for OKX's
    statuses and codes. 50011 (on 429 or 200) pauses every request; busy, unavailable, timeout and 5xx are
    retried; any other code, on any status, is fatal."""
    body = decode_json(response.content)
    code, message = _okx_error(body)
    status = response.status_code
    if response.is_success and code == 0 and isinstance(body, dict) and "data" in body:
        return body["data"]
    error = (None, None) if code == 0 else (code, message)  # "0" without data, or on an error status
    raise failure(
        response,
        what,
        NAME,
        body,
        error,
        retriable=code == RATE_LIMITED or code in _TRY_AGAIN or status == 429 or status >= 500,
        hold="pause" if code == RATE_LIMITED or status == 429 else "backoff",
        otherwise="no data in the answer",
    )


def _okx_error(body: object) -> tuple[int | None, str | None]:
    """OKX's ``code`` (a string of digits; 0 for success) and ``msg``; (None, None) without them."""
    if not isinstance(body, dict) or "code" not in body:
        return None, None
    code = body["code"]
    number = int(code) if isinstance(code, str) and code.isdigit() and len(code) <= 9 else code
    return venue_error(number, body.get("msg", ""))
