"""Binance options (eapi): what it lists, how to ask one pair's open interest, and how it answers.

Knows the URLs, parameters, status codes, the ``{"code", "msg"}`` error JSON, the 418 ban and the 429 pause;
the weight headers are read by the gate. One scope is one (underlying, expiry) pair, one request each.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from collector.config import BinanceSettings
from collector.errors import FatalExchangeError
from collector.normalise import Listing, Normalised, normalise_rows, parse_expiry, parse_listing
from collector.records import Pair, Scope
from collector.venues.base import Fetched, Scopes
from collector.venues.gate import ExchangeGate
from collector.venues.http import VenueHttp, decode_json, failure, venue_error

NAME = "binance"
EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
log = logging.getLogger("collector.exchange")
_BANNED_UNTIL = re.compile(r"banned until ([0-9]{12,})")
_LAST_DATETIME_S = 253_402_300_799  # 9999-12-31 23:59:59 UTC: the last moment a datetime can hold
NO_LISTING = "the exchange's listing (exchangeInfo) is unavailable, so there is nothing to poll"


def scope(underlying: str, expiry: str) -> Scope:
    """Binance's scope for one pair, ``expiry`` as the exchange's YYMMDD."""
    return Scope(NAME, f"{underlying} {expiry}", underlying, parse_expiry(expiry))


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
        """The pairs to poll, the configured underlyings the exchange does not list, and why there are
        none."""
        try:
            listing: Listing | None = parse_listing(await self.exchange_info())
        except Exception as error:  # a listing that cannot be had costs the listing, not the cycle
            log.error("cannot read the exchange's listing: %s", error, extra={"venue": NAME})
            listing = None
        if listing is None and self.settings.expiries is None:
            return Scopes([], (), NO_LISTING, listing_failed=True)
        underlyings = self.settings.underlyings
        unlisted: tuple[str, ...] = ()
        if listing is not None:
            unlisted = tuple(name for name in underlyings if name not in listing.underlyings)
            if unlisted:
                log.error(
                    "configured underlyings not listed by the exchange: %s (listed: %s)",
                    ", ".join(unlisted),
                    ", ".join(sorted(listing.underlyings)) or "none",
                    extra={"venue": NAME},
                )
            underlyings = tuple(name for name in underlyings if name not in unlisted)
        if self.settings.expiries is not None:
            pairs = [
                Pair(underlying, expiry) for underlying in underlyings for expiry in self.settings.expiries
            ]
        else:
            assert listing is not None
            pairs = sorted(
                (pair for pair in listing.pairs if pair.underlying in underlyings),
                key=lambda pair: (pair.underlying, pair.expiry),
            )
        scopes = [scope(pair.underlying, pair.expiry) for pair in pairs]
        return Scopes(scopes, unlisted, None if scopes else "no (underlying, expiry) pair to poll")

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
