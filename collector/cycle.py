"""One collection cycle: which pairs, fetch them concurrently, normalise, write, report what happened."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from collector.config import CollectSettings, Settings
from collector.errors import ExchangeError, SinkError
from collector.normalise import Listing, normalise_rows, parse_listing
from collector.records import OpenInterest, Pair
from collector.sink.postgres import PostgresSink, WriteResult
from collector.source.binance import BinanceOptions

log = logging.getLogger("collector.cycle")
USER_AGENT = "oi-collector/0.1 (+open-interest history)"


@dataclass(frozen=True, slots=True)
class PairOutcome:
    """What happened to one pair in one cycle."""

    pair: Pair
    records: list[OpenInterest] = field(repr=False)
    rejected: int = 0
    error: ExchangeError | None = None
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did; ``ok`` is what ``oi-collector once`` turns into its exit code."""

    started_at: datetime
    outcomes: list[PairOutcome]
    unlisted: tuple[str, ...]
    problem: str | None  # why the cycle as a whole failed (nothing to poll, database down)
    written: WriteResult
    duration_s: float

    @property
    def pairs_ok(self) -> int:
        return sum(outcome.ok for outcome in self.outcomes)

    @property
    def pairs_failed(self) -> int:
        return len(self.outcomes) - self.pairs_ok

    @property
    def rows_rejected(self) -> int:
        return sum(outcome.rejected for outcome in self.outcomes)

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and not self.pairs_failed and not self.unlisted and self.problem is None

    def summary(self) -> str:
        written, unchanged = self.written.written, self.written.unchanged
        line = (
            f"cycle {self.started_at:%Y-%m-%d %H:%M:%S}Z: {self.pairs_ok} pairs ok,"
            f" {self.pairs_failed} failed; {written + unchanged} rows stored"
            f" ({written} new or changed, {unchanged} unchanged), {self.rows_rejected} rejected,"
            f" in {self.duration_s:.2f} s"
        )
        return f"{line}; FAILED: {self.problem}" if self.problem else line


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    limit = settings.exchange.max_in_flight
    return httpx.AsyncClient(
        timeout=settings.exchange.timeout_s,
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        headers={"User-Agent": USER_AGENT},
    )


async def collect_once(settings: Settings, sink: PostgresSink) -> CycleReport:
    """One cycle with a client of its own: what ``once`` and the daemon call."""
    async with make_http_client(settings) as http:
        return await run_cycle(settings, BinanceOptions(http, settings.exchange.base_url), sink)


async def run_cycle(settings: Settings, exchange: BinanceOptions, sink: PostgresSink) -> CycleReport:
    started_at, started = datetime.now(UTC), time.monotonic()
    pairs, unlisted, problem = await _pairs_to_poll(settings.collect, exchange)
    limit = asyncio.Semaphore(settings.exchange.max_in_flight)
    outcomes = list(await asyncio.gather(*(_fetch(exchange, pair, limit) for pair in pairs)))
    written, write_problem = _write(sink, [record for outcome in outcomes for record in outcome.records])
    report = CycleReport(
        started_at=started_at,
        outcomes=outcomes,
        unlisted=unlisted,
        problem=problem or write_problem,
        written=written,
        duration_s=time.monotonic() - started,
    )
    (log.info if report.ok else log.error)(report.summary())
    return report


async def _pairs_to_poll(
    collect: CollectSettings, exchange: BinanceOptions
) -> tuple[list[Pair], tuple[str, ...], str | None]:
    """The pairs to poll, the configured underlyings the exchange does not list, and why there are none."""
    try:
        listing: Listing | None = parse_listing(await exchange.exchange_info())
    except (ExchangeError, ValueError) as error:
        log.error("cannot read the exchange's listing: %s", error)
        listing = None
    if listing is None and collect.expiries is None:
        return [], (), "the exchange's listing (exchangeInfo) is unavailable, so there is nothing to poll"
    underlyings = collect.underlyings
    unlisted: tuple[str, ...] = ()
    if listing is not None:
        unlisted = tuple(name for name in underlyings if name not in listing.underlyings)
        if unlisted:
            log.error(
                "configured underlyings not listed by the exchange: %s (listed: %s)",
                ", ".join(unlisted),
                ", ".join(sorted(listing.underlyings)) or "none",
            )
        underlyings = tuple(name for name in underlyings if name not in unlisted)
    if collect.expiries is not None:
        pairs = [Pair(underlying, expiry) for underlying in underlyings for expiry in collect.expiries]
    else:
        assert listing is not None
        pairs = sorted(
            (pair for pair in listing.pairs if pair.underlying in underlyings),
            key=lambda pair: (pair.underlying, pair.expiry),
        )
    return pairs, unlisted, None if pairs else "no (underlying, expiry) pair to poll"


async def _fetch(exchange: BinanceOptions, pair: Pair, limit: asyncio.Semaphore) -> PairOutcome:
    async with limit:
        started = time.monotonic()
        try:
            rows = await exchange.open_interest(pair)
        except ExchangeError as error:
            log.error("%s: %s; this pair failed this cycle, the others go on", pair, error)
            return PairOutcome(pair, [], error=error, duration_s=time.monotonic() - started)
        received_at = datetime.now(UTC)
    normalised = normalise_rows(rows, received_at)
    for rejection in normalised.rejections:
        log.warning("%s: rejected a row, %s; the other rows are kept", pair, rejection)
    if not rows:
        log.warning("%s: the exchange returned no rows", pair)
    return PairOutcome(
        pair, normalised.records, len(normalised.rejections), duration_s=time.monotonic() - started
    )


def _write(sink: PostgresSink, records: Sequence[OpenInterest]) -> tuple[WriteResult, str | None]:
    try:
        return sink.write(records), None
    except SinkError as error:
        log.error("could not store %d rows: %s", len(records), error)
        return WriteResult(0, 0), f"{len(records)} rows not stored: {error}"
