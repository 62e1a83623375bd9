"""The venues oi-collector polls, each a small module behind one interface (``base.Venue``).

    binance  Binance options (eapi): one request per (underlying, expiry)
    deribit  Deribit options: one request per currency (BTC, ETH, USDC)

Shared mechanics live beside them, once: ``http`` (retries, deadlines, capped bodies, exact JSON) and
``gate`` (bans, pauses, request weight), one gate per venue so that a ban at one venue never holds another.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from collector.config import Settings
from collector.deadline import Deadline
from collector.venues import binance, deribit
from collector.venues.base import Fetched, Scopes, Venue
from collector.venues.gate import ExchangeGate, GateRules
from collector.venues.http import VenueHttp

__all__ = ["Fetched", "Gates", "Scopes", "Venue", "make_venues"]
# What each venue documents of its bans and pauses.
RULES: dict[str, GateRules] = {
    binance.NAME: GateRules(binance.NAME),
    # Deribit refills credits within seconds: a pause past a minute is not believed; it documents no ban.
    deribit.NAME: GateRules(deribit.NAME, max_pause_s=60.0),
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
    venues: list[Venue] = []
    enabled = settings.venues.enabled
    if binance.NAME in enabled:
        gate = gates[binance.NAME]
        client = VenueHttp(http, settings.exchange.base_url, gate, deadline, binance.parse_response)
        venues.append(binance.BinanceVenue(client, settings.collect))
    if deribit.NAME in enabled:
        gate = gates[deribit.NAME]
        client = VenueHttp(http, settings.deribit.base_url, gate, deadline, deribit.parse_response)
        venues.append(deribit.DeribitVenue(client, settings.deribit.currencies))
    return venues
