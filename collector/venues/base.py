"""The interface every venue implements, and what it hands the cycle.

A venue knows its URLs, field names, symbol grammar, error codes and rate-limit rules; the cycle knows none
of them. It says which scopes to poll this cycle (one request each: Binance an underlying and expiry, Deribit
a currency, OKX an instrument family, Bybit a base coin) and turns one scope's answer into typed records and
rejections, or raises an ExchangeError saying what came back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from collector.errors import FatalExchangeError
from collector.normalise import keep_rows
from collector.records import OpenInterest, Rejection, Scope
from collector.venues.gate import ExchangeGate
from collector.venues.http import Answer, VenueHttp


@dataclass(frozen=True, slots=True)
class Unlisted:
    """A configured scope the venue does not list (a typo, an expiry it has not listed): it fails each cycle,
    journalled, and shows in ``gaps``."""

    scope: Scope
    reason: str


@dataclass(frozen=True, slots=True)
class Scopes:
    """What a venue will poll this cycle; the configured scopes it does not list; why there is nothing."""

    scopes: list[Scope]
    unlisted: tuple[Unlisted, ...] = ()
    problem: str | None = None
    listing_failed: bool = False  # the listing could not be had: the cycle polls the last scopes known


@dataclass(frozen=True, slots=True)
class Fetched:
    """One scope's answer: the rows kept, the rows rejected, and how many requests it took."""

    records: list[OpenInterest]
    rejections: list[Rejection]
    attempts: int = 1
    empty: bool = False  # the venue answered with no rows at all


class Venue(Protocol):
    name: str

    @property
    def gate(self) -> ExchangeGate: ...

    async def scopes(self) -> Scopes: ...

    async def fetch(self, scope: Scope) -> Fetched: ...


@dataclass
class AskedByName:
    """A venue asked once per configured name (Deribit's currencies, OKX's families, Bybit's coins): one
    answer holds every option of that name, so no listing is needed. A subclass sets ``name`` and writes
    ``scope`` and ``fetch``."""

    http: VenueHttp
    names: tuple[str, ...]

    @property
    def gate(self) -> ExchangeGate:
        return self.http.gate

    def scope(self, name: str) -> Scope:
        raise NotImplementedError

    async def scopes(self) -> Scopes:
        return Scopes([self.scope(name) for name in self.names])


def rows_of(
    answer: Answer,
    rows: object,
    what: str,
    parse: Callable[[object], OpenInterest | Rejection],
    symbol_field: str,
) -> Fetched:
    """One answer's rows (``rows``, taken from its body) through ``parse``, one row costing only itself; an
    answer whose rows are not a list fails."""
    if not isinstance(rows, list):
        raise FatalExchangeError(f"{what}: expected a list of rows, got {type(rows).__name__}", status=200)
    kept = keep_rows(rows, parse, symbol_field)
    return Fetched(kept.records, kept.rejections, answer.attempts, empty=not rows)
