"""One collection cycle: which pairs, fetch them concurrently, normalise, spool and write, report."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from collector.config import CollectSettings, Settings
from collector.deadline import Deadline
from collector.errors import ExchangeError, FatalExchangeError, NotSentError
from collector.normalise import Listing, normalise_rows, parse_expiry, parse_listing
from collector.records import Batch, OpenInterest, Pair, PairRun, RejectedRow, Rejection, RunStatus
from collector.sink.store import Committed, Store
from collector.source.binance import BinanceOptions
from collector.source.gate import ExchangeGate

log = logging.getLogger("collector.cycle")
USER_AGENT = "oi-collector/0.1 (+open-interest history)"
_NO_LISTING = "the exchange's listing (exchangeInfo) is unavailable, so there is nothing to poll"


@dataclass(frozen=True, slots=True)
class PairOutcome:
    """What happened to one pair in one cycle."""

    pair: Pair
    records: list[OpenInterest] = field(repr=False)
    rejected: int = 0
    error: ExchangeError | None = None
    attempts: int = 1
    duration_s: float = 0.0
    rejections: list[Rejection] = field(default_factory=list, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def status(self) -> RunStatus:
        if self.error is not None:
            return "failed"
        return "partial" if self.rejected else "ok"

    def rejected_rows(self, cycle_start: datetime) -> list[RejectedRow]:
        """The journal's entries for the rows of this answer that normalise rejected."""
        expiry = parse_expiry(self.pair.expiry)
        return [
            RejectedRow(
                cycle_start, self.pair.underlying, expiry, "normalise", ordinal, r.symbol, r.field, r.reason
            )
            for ordinal, r in enumerate(self.rejections)
        ]

    def run(self, cycle_start: datetime) -> PairRun:
        error = self.error
        return PairRun(
            cycle_start=cycle_start,
            underlying=self.pair.underlying,
            expiry=parse_expiry(self.pair.expiry),
            status=self.status,
            snapshot_ts=max((record.ts for record in self.records), default=None),
            rows_stored=len(self.records),
            rows_rejected=self.rejected,
            http_status=error.status if error else None,
            error_code=error.code if error else None,
            error_message=(error.exchange_message or str(error)) if error else None,
            duration_ms=round(self.duration_s * 1000),
        )


@dataclass(frozen=True, slots=True)
class CycleReport:
    """What one cycle did; ``ok`` is what ``oi-collector once`` turns into its exit code."""

    started_at: datetime
    outcomes: list[PairOutcome]
    unlisted: tuple[str, ...]
    problem: str | None  # why the cycle as a whole failed (nothing to poll, database down)
    committed: Committed | None
    used_weight: int | None
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
    def rows_fetched(self) -> int:
        return sum(len(outcome.records) for outcome in self.outcomes)

    @property
    def stored(self) -> bool:
        return self.committed is not None and self.committed.written is not None

    @property
    def ok(self) -> bool:
        return bool(self.outcomes) and not self.pairs_failed and not self.unlisted and self.problem is None

    def fields(self) -> dict[str, object]:
        """The summary's facts, as log-record fields."""
        return {
            "pairs_ok": self.pairs_ok,
            "pairs_failed": self.pairs_failed,
            "rows_fetched": self.rows_fetched,
            "rows_rejected": self.rows_rejected,
            "rows_refused": self.rows_refused,
            "duration_s": round(self.duration_s, 3),
            "status": "ok" if self.ok else "failed",
        }

    def summary(self) -> str:
        line = (
            f"cycle {self.started_at:%Y-%m-%d %H:%M:%S}Z: {self.pairs_ok} pairs ok,"
            f" {self.pairs_failed} failed; {self._rows()}, {self.rows_rejected} rejected{self._refused()},"
            f" in {self.duration_s:.2f} s; exchange weight used: {self.used_weight}"
        )
        return f"{line}; FAILED: {self.problem}" if self.problem else line

    @property
    def rows_refused(self) -> int:
        """Rows the database refused for their content: set aside in the spool's refused/, not stored."""
        return self.committed.refused_rows if self.committed is not None else 0

    def _refused(self) -> str:
        return f" ({self.rows_refused} refused by the database, set aside)" if self.rows_refused else ""

    def _rows(self) -> str:
        committed = self.committed
        if committed is not None and committed.written is not None:
            written, unchanged = committed.written.written, committed.written.unchanged
            return f"{written + unchanged} rows stored ({written} new or changed, {unchanged} unchanged)"
        if committed is not None and committed.spooled:
            return f"{self.rows_fetched} rows kept in the spool, not yet stored"
        return f"{self.rows_fetched} rows fetched, none stored"


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    limit = settings.exchange.max_in_flight + 1  # the pairs' requests, and exchangeInfo beside them
    return httpx.AsyncClient(
        timeout=settings.exchange.timeout_s,
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        headers={"User-Agent": USER_AGENT},
    )


@dataclass
class KnownPairs:
    """The pairs the previous cycle polled. The next cycle starts fetching them while it asks the exchange
    what is listed, so the listing's round trip is off the critical path; and when the listing cannot be had,
    the last one known is polled rather than nothing."""

    pairs: list[Pair] = field(default_factory=list)


async def collect_once(
    settings: Settings,
    store: Store,
    gate: ExchangeGate,
    deadline: Deadline | float | None = None,
    known: KnownPairs | None = None,
) -> CycleReport:
    """One cycle with an HTTP client of its own; nothing is sent or waited for past ``deadline`` (epoch s,
    by default one interval from now), and the cycle ends by then with every pair fetched so far stored."""
    if deadline is None:
        deadline = time.time() + settings.collect.interval_s
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    async with make_http_client(settings) as http:
        exchange = BinanceOptions(http, settings.exchange.base_url, gate, deadline)
        return await run_cycle(settings, exchange, store, known or KnownPairs())


async def run_cycle(
    settings: Settings, exchange: BinanceOptions, store: Store, known: KnownPairs
) -> CycleReport:
    """Fetch, store, report. No exception escapes: what one pair breaks fails that pair, and what breaks
    the cycle itself fails the cycle with every pair fetched so far still stored."""
    started_at, started = datetime.now(UTC), time.monotonic()
    fetched: dict[Pair, PairOutcome] = {}
    unlisted: tuple[str, ...] = ()
    try:
        unlisted, problem = await _fetch_all(settings, exchange, known, fetched)
    except Exception as error:  # the rule: nothing escapes a cycle
        log.exception("the cycle broke while fetching; storing the %d pairs fetched so far", len(fetched))
        problem = f"the cycle broke: {type(error).__name__}: {error}"
    outcomes = list(fetched.values())
    _say_not_sent(outcomes)
    committed = None
    if outcomes:
        batch = Batch(
            runs=[outcome.run(started_at) for outcome in outcomes],
            records=[record for outcome in outcomes for record in outcome.records],
            rejections=[entry for outcome in outcomes for entry in outcome.rejected_rows(started_at)],
        )
        committed = store.commit(batch)  # every fetch is done: nothing else needs the event loop now
        if committed.problem is not None:
            problem = problem or _storage_problem(committed, len(batch.records), store)
    weight = exchange.gate.used_weight
    report = CycleReport(
        started_at=started_at,
        outcomes=outcomes,
        unlisted=unlisted,
        problem=problem,
        committed=committed,
        used_weight=weight.used if weight else None,
        duration_s=time.monotonic() - started,
    )
    (log.info if report.ok else log.error)(report.summary(), extra=report.fields())
    return report


async def _fetch_all(
    settings: Settings, exchange: BinanceOptions, known: KnownPairs, fetched: dict[Pair, PairOutcome]
) -> tuple[tuple[str, ...], str | None]:
    """Every pair's outcome into ``fetched`` by the deadline; returns the unlisted underlyings and the
    cycle's problem."""
    limit = asyncio.Semaphore(settings.exchange.max_in_flight)
    early = {pair: asyncio.create_task(_fetch(exchange, pair, limit)) for pair in known.pairs}
    try:
        pairs, unlisted, problem = await _pairs_to_poll(settings.collect, exchange)
        if problem == _NO_LISTING and known.pairs:
            log.warning("polling the %d pairs of the last listing known instead", len(known.pairs))
            pairs, problem = known.pairs, None
        tasks = {
            pair: early.pop(pair) if pair in early else asyncio.create_task(_fetch(exchange, pair, limit))
            for pair in pairs
        }
        known.pairs = pairs
    finally:
        for unlisted_now in early.values():  # listed last cycle, not any more: expired
            unlisted_now.cancel()
    await _wait_until(exchange.deadline, tasks, fetched)
    return unlisted, problem


async def _wait_until(
    deadline: Deadline, tasks: dict[Pair, asyncio.Task[PairOutcome]], fetched: dict[Pair, PairOutcome]
) -> None:
    """Wait for the pairs' tasks until the deadline (which a stop request may bring forward); what is not done
    by then fails for this cycle, and everything done is kept."""
    pending: set[asyncio.Task[PairOutcome]] = set(tasks.values())
    while pending and not deadline.passed():
        _, pending = await asyncio.wait(pending, timeout=min(1.0, max(0.0, deadline.remaining())))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for pair, task in tasks.items():
        if task.cancelled() or task.exception() is not None:
            late = FatalExchangeError(f"openInterest {pair}: no answer by the cycle's deadline")
            log.error("%s; this pair failed this cycle, the others are stored", late, extra=_about(pair))
            fetched[pair] = PairOutcome(pair, [], error=late)
        else:
            fetched[pair] = task.result()


def _storage_problem(committed: Committed, rows: int, store: Store) -> str:
    if not committed.spooled:
        return f"{committed.lost_rows} rows LOST: spool full and database unavailable ({committed.problem})"
    pending = len(store.spool.pending())
    return (
        f"database unavailable ({committed.problem}); this cycle's {rows} rows are in the spool"
        f" ({pending} batches waiting) and will be written when it is back"
    )


async def _pairs_to_poll(
    collect: CollectSettings, exchange: BinanceOptions
) -> tuple[list[Pair], tuple[str, ...], str | None]:
    """The pairs to poll, the configured underlyings the exchange does not list, and why there are none."""
    try:
        listing: Listing | None = parse_listing(await exchange.exchange_info())
    except Exception as error:  # a listing that cannot be had costs the listing, not the cycle
        log.error("cannot read the exchange's listing: %s", error)
        listing = None
    if listing is None and collect.expiries is None:
        return [], (), _NO_LISTING
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
    """One pair's outcome, whatever its answer holds: what it breaks fails this pair only."""
    started = time.monotonic()
    try:
        return await _fetch_pair(exchange, pair, limit)
    except Exception as error:  # the rule: one answer costs only itself
        log.exception(
            "%s: the answer could not be read; this pair failed this cycle, the others go on",
            pair,
            extra=_about(pair),
        )
        failure = FatalExchangeError(
            f"openInterest {pair}: unreadable answer ({type(error).__name__}: {error})"
        )
        return PairOutcome(pair, [], error=failure, duration_s=time.monotonic() - started)


async def _fetch_pair(exchange: BinanceOptions, pair: Pair, limit: asyncio.Semaphore) -> PairOutcome:
    async with limit:
        started = time.monotonic()
        try:
            answer = await exchange.open_interest(pair)
        except ExchangeError as error:
            if not isinstance(error, NotSentError):  # those are said once for the whole cycle
                log.error(
                    "%s: %s; this pair failed this cycle, the others go on",
                    pair,
                    error,
                    extra=_about(pair, status="failed", http_status=error.status, error_code=error.code),
                )
            elapsed = time.monotonic() - started
            return PairOutcome(pair, [], error=error, attempts=error.attempts, duration_s=elapsed)
        received_at = datetime.now(UTC)
    rows = answer.body
    assert isinstance(rows, list)
    normalised = normalise_rows(rows, received_at, pair)
    for rejection in normalised.rejections:
        log.warning(
            "%s: rejected a row, %s; the other rows are kept",
            pair,
            rejection,
            extra=_about(pair, symbol=rejection.symbol, field=rejection.field),
        )
    if not rows:
        log.warning("%s: the exchange returned no rows", pair, extra=_about(pair))
    elapsed = time.monotonic() - started
    return PairOutcome(
        pair,
        normalised.records,
        len(normalised.rejections),
        None,
        answer.attempts,
        elapsed,
        normalised.rejections,
    )


def _about(pair: Pair, **facts: object) -> dict[str, object]:
    """Log-record fields for a line about one pair (the JSON log format shows them as fields)."""
    return {"pair": str(pair), **facts}


def _say_not_sent(outcomes: list[PairOutcome]) -> None:
    held = [outcome.error for outcome in outcomes if isinstance(outcome.error, NotSentError)]
    if held:
        log.error("%d pairs not polled this cycle: %s", len(held), held[0].reason)
