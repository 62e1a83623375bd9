"""Deribit options: one ``get_book_summary_by_currency`` per currency (BTC, ETH, USDC), JSON-RPC over HTTP.

Knows the URL, the JSON-RPC envelope and its error codes, the instrument names (``BTC-27JUN25-100000-C``,
``XRP_USDC-30JUN23-0d625-C``) and the row fields. Numbers come as JSON numbers: they are decoded as Decimals,
so a value with more digits than a float holds is stored as served. ``ts`` is the row's
``creation_timestamp``; ``open_interest`` is in the base coin; Deribit serves no USD value of open interest,
and ``underlying_price`` is the row's own.
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
    keep_rows,
    match_symbol,
    optional,
    parse_dmmmyy,
    parse_number,
    read_field,
    row_and_symbol,
    venue_time,
)
from collector.records import OpenInterest, Rejection, Scope, Side
from collector.venues.base import AskedByName, Fetched, rows_of
from collector.venues.http import decode_json, failure, venue_error

NAME = "deribit"
BOOK_SUMMARY = "/api/v2/public/get_book_summary_by_currency"
_NAME = re.compile(
    r"(?P<base>[A-Z0-9]{1,20})(?P<linear>_USDC)?-(?P<expiry>[0-9]{1,2}[A-Z]{3}[0-9]{2})"
    r"-(?P<strike>[0-9]{1,30}(?:[dD][0-9]{1,30})?)-(?P<side>[CP])"
)
RATE_LIMITED = 10028  # too_many_requests: out of credits, and the session is closed
_TRY_AGAIN = {10040, 10066, 11051, 13028}  # retry, too many concurrent, maintenance, temporarily unavailable


def scope(currency: str) -> Scope:
    return Scope(NAME, currency)


@dataclass(frozen=True, slots=True)
class Instrument:
    """What an instrument name says."""

    underlying: str
    linear: bool
    expiry: date
    strike: Decimal
    side: Side


def parse_instrument(name: str) -> Instrument:
    """``BTC-5AUG23-580-P`` / ``XRP_USDC-30JUN23-0d625-C`` → its parts; ValueError when it is neither."""
    match = match_symbol(name, _NAME, "BASE[_USDC]-DMMMYY-STRIKE-C|P")
    strike = parse_number(Decimal(match["strike"].replace("d", ".").replace("D", ".")))
    expiry = parse_dmmmyy(match["expiry"])
    return Instrument(match["base"], match["linear"] is not None, expiry, strike, SIDES[match["side"]])


def _of_currency(currency: str) -> Callable[[object], Instrument]:
    """A parser of instrument names that refuses those of another currency than the one asked for."""

    def parse(name: object) -> Instrument:
        instrument = parse_instrument(str(name))
        if instrument.linear != (currency == "USDC") or (
            currency != "USDC" and instrument.underlying != currency
        ):
            raise ValueError(f"is not an option of currency {currency}, the one asked for")
        return instrument

    return parse


@dataclass
class DeribitVenue(AskedByName):
    """One request per configured currency; every option of that currency in one answer."""

    name: str = NAME

    def scope(self, currency: str) -> Scope:
        return scope(currency)

    async def fetch(self, scope: Scope) -> Fetched:
        params = {"currency": scope.label, "kind": "option"}
        what = f"get_book_summary_by_currency {scope.label}"
        answer = await self.http.get(BOOK_SUMMARY, params, what)
        received_at = datetime.now(UTC)
        return rows_of(
            answer,
            answer.body,
            what,
            lambda row: normalise_row(row, scope.label, received_at),
            "instrument_name",
        )


def normalise_rows(
    rows: list[object], currency: str, received_at: datetime
) -> tuple[list[OpenInterest], list[Rejection]]:
    """A currency's rows → records and rejections; whatever one row breaks costs only that row."""
    kept = keep_rows(rows, lambda row: normalise_row(row, currency, received_at), "instrument_name")
    return kept.records, kept.rejections


def normalise_row(row: object, currency: str, received_at: datetime) -> OpenInterest | Rejection:
    start = row_and_symbol(row, "instrument_name")
    if isinstance(start, Rejection):
        return start
    fields, name = start
    try:
        instrument = read_field(fields, "instrument_name", _of_currency(currency))
        ts = read_field(fields, "creation_timestamp", venue_time(received_at))
        open_interest = read_field(fields, "open_interest", parse_number)
        price = read_field(fields, "underlying_price", optional(parse_number), required=False)
    except FieldError as error:
        return Rejection(name, error.field, error.reason)
    return OpenInterest(
        venue=NAME,
        symbol=name,
        ts=ts,
        underlying=instrument.underlying,
        expiry=instrument.expiry,
        strike=instrument.strike,
        side=instrument.side,
        open_interest=open_interest,
        open_interest_usd=None,  # Deribit serves none; an estimate is the view's, from underlying_price
        underlying_price=price,
        collected_at=received_at,
    )


def parse_response(response: httpx.Response, what: str) -> object:
    """The ``result`` of a good answer, or the ExchangeError saying what came back (one place for Deribit's
    statuses and JSON-RPC error codes: 10028 pauses every request, maintenance and 5xx are retried)."""
    body = decode_json(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    if response.is_success and isinstance(body, dict) and error is None and "result" in body:
        return body["result"]
    rpc_error = _rpc_error(error)
    code = rpc_error[0]
    status = response.status_code
    raise failure(
        response,
        what,
        NAME,
        body,
        rpc_error,
        retriable=code == RATE_LIMITED or code in _TRY_AGAIN or status == 429 or status >= 500,
        hold="pause" if code == RATE_LIMITED or status == 429 else "backoff",
        otherwise="no result in the JSON-RPC answer",
    )


def _rpc_error(error: object) -> tuple[int | None, str | None]:
    if not isinstance(error, dict):
        return None, None
    return venue_error(error.get("code"), error.get("message"))
