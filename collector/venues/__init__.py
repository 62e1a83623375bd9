"""The venues oi-collector polls, each a small module behind one interface (``base.Venue``).

    binance  Binance options (eapi): one request per (underlying, expiry)
    deribit  Deribit options: one request per currency (BTC, ETH, USDC)
    okx      OKX options: one request per instrument family (BTC-USD, ETH-USD)
    bybit    Bybit options: one request per base coin (BTC, ETH, SOL)

Shared mechanics live beside them, once: ``http`` (retries, deadlines, capped bodies, exact JSON) and
``gate`` (bans, pauses, request weight), one gate per venue so that a ban at one venue never holds another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from collector.config import Settings
from collector.deadline import Deadline
from collector.venues import binance, bybit, deribit, okx
from collector.venues.base import Fetched, Scopes, Venue
from collector.venues.gate import ExchangeGate, GateRules
from collector.venues.http import Classify, VenueHttp

__all__ = ["Fetched", "Gates", "Scopes", "Venue", "make_venues"]
# What each venue documents of its bans and pauses.
RULES: dict[str, GateRules] = {
    binance.NAME: GateRules(binance.NAME),
    # Deribit refills credits within seconds: a pause past a minute is not believed; it documents no ban.
    deribit.NAME: GateRules(deribit.NAME, max_pause_s=60.0),
    # OKX counts requests over 2 s windows; it documents no ban.
    okx.NAME: GateRules(okx.NAME, max_pause_s=60.0),
    # Bybit answers a broken IP limit with 403 and a ban of at least 10 minutes that it does not time.
    bybit.NAME: GateRules(
        bybit.NAME, default_ban_s=600.0, max_ban_s=3600.0, max_pause_s=60.0, ban_status=bybit.BANNED
    ),
}


@dataclass
class Gates:
    """Every venue's gate, made on first use; ban state files beside the spool (Binance's keeps its old name,
    ``exchange-ban.json``, so an upgrade keeps a ban in force)."""

    directory: Path | None = None
    gates: dict[str, ExchangeGate] = field(default_factory=dict)

    @classmethod
    def of(cls, gate: ExchangeGate, venue: str = binance.NAME) -> Gates:
        return cls(None, {venue: gate})

    def __getitem__(self, venue: str) -> ExchangeGate:
        if venue not in self.gates:
            state = None
            if self.directory is not None:
                name = "exchange-ban.json" if venue == binance.NAME else f"{venue}-ban.json"
                state = self.directory / name
            self.gates[venue] = ExchangeGate(state, rules=RULES.get(venue, GateRules(venue)))
        return self.gates[venue]


def make_venues(settings: Settings, http: httpx.AsyncClient, gates: Gates, deadline: Deadline) -> list[Venue]:
    """The enabled venues for one cycle, each with its own gate, sharing the cycle's deadline."""

    def client(venue: str, base_url: str, classify: Classify) -> VenueHttp:
        return VenueHttp(http, base_url, gates[venue], deadline, classify)

    makers: dict[str, Callable[[], Venue]] = {
        binance.NAME: lambda: binance.BinanceVenue(
            client(binance.NAME, settings.binance.base_url, binance.parse_response), settings.binance
        ),
        deribit.NAME: lambda: deribit.DeribitVenue(
            client(deribit.NAME, settings.deribit.base_url, deribit.parse_response),
            settings.deribit.currencies,
        ),
        okx.NAME: lambda: okx.OkxVenue(
            client(okx.NAME, settings.okx.base_url, okx.parse_response), settings.okx.families
        ),
        bybit.NAME: lambda: bybit.BybitVenue(
            client(bybit.NAME, settings.bybit.base_url, bybit.parse_response), settings.bybit.base_coins
        ),
    }
    return [makers[name]() for name in settings.venues.enabled]
