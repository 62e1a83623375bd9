"""One collection cycle: which scopes each venue polls, fetch them concurrently, spool and write, report.

Orchestration only: no venue's URLs, field names or error codes (see collector/venues/), no SQL.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from collector.config import Settings
from collector.deadline import Deadline
from collector.errors import ExchangeError, FatalExchangeError, NotSentError
from collector.records import Batch, OpenInterest, PairRun, RejectedRow, Rejection, RunStatus, Scope
from collector.sink.store import Committed, Store
from collector.venues import Gates, Venue, make_venues
from collector.venues.base import Scopes, Unlisted
from collector.venues.gate import ExchangeGate

log = logging.getLogger("collector.cycle")
USER_AGENT = "oi-collector/0.1 (+open-interest history)"


@dataclass(frozen=True, slots=True)
class ScopeOutcome:
    """What happened to one scope (one request's worth of a venue) in one cycle."""

    scope: Scope
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
        scope = self.scope
        return [
            RejectedRow(
                cycle_start,
                scope.venue,
                scope.underlying,
                scope.expiry,
                "normalise",
                ordinal,
                r.symbol,
                r.field,
                r.reason,
            )
            for ordinal, r in enumerate(self.rejections)
        ]

    def run(self, cycle_start: datetime) -> PairRun:
        error = self.error
        return PairRun(
            cycle_start=cycle_start,
            venue=self.scope.venue,
            scope=self.scope.label,
            underlying=self.scope.underlying,
            expiry=self.scope.expiry,
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
    outcomes: list[ScopeOutcome]
    problem: str | None  # why the cycle as a whole failed (nothing to poll, database down)
    committed: Committed | None
    used_weight: dict[str, int]  # per venue that reports one (Binance): its last count of request weight
    duration_s: float

    @property
    def scopes_ok(self) -> int:
        return sum(outcome.ok for outcome in self.outcomes)

    @property
    def scopes_failed(self) -> int:
        return len(self.outcomes) - self.scopes_ok

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
        return bool(self.outcomes) and not self.scopes_failed and self.problem is None

    def by_venue(self) -> dict[str, dict[str, int]]:
        """Per venue: scopes ok, scopes failed, rows fetched."""
        venues: dict[str, dict[str, int]] = {}
        for outcome in self.outcomes:
            counts = venues.setdefault(outcome.scope.venue, {"ok": 0, "failed": 0, "rows": 0})
            counts["ok" if outcome.ok else "failed"] += 1
            counts["rows"] += len(outcome.records)
        return venues

    def fields(self) -> dict[str, object]:
        """The summary's facts, as log-record fields."""
        return {
            "scopes_ok": self.scopes_ok,
            "scopes_failed": self.scopes_failed,
            "rows_fetched": self.rows_fetched,
            "rows_rejected": self.rows_rejected,
            "rows_refused": self.rows_refused,
            "duration_s": round(self.duration_s, 3),
            "venues": self.by_venue(),
            "status": "ok" if self.ok else "failed",
        }

    def summary(self) -> str:
        venues = ", ".join(
            f"{venue} {counts['ok']}/{counts['ok'] + counts['failed']}"
            for venue, counts in self.by_venue().items()
        )
        line = (
            f"cycle {self.started_at:%Y-%m-%d %H:%M:%S}Z: {plural(self.scopes_ok, 'scope')} ok,"
            f" {self.scopes_failed} failed ({venues or 'no venue polled'}); {self._rows()},"
            f" {self.rows_rejected} rejected{self._refused()}, in {self.duration_s:.2f} s"
        )
        line += "".join(f"; {venue} weight used: {used}" for venue, used in self.used_weight.items())
        return line + self._why()

    def _why(self) -> str:
        """Why the cycle failed, for the summary line: the cycle's problem, then the first failures."""
        reasons = [] if self.problem is None else [self.problem]
        failed = [outcome for outcome in self.outcomes if outcome.error is not None]
        reasons += [f"{outcome.scope}: {outcome.error}" for outcome in failed[:3]]
        if len(failed) > 3:
            reasons.append(f"and {plural(len(failed) - 3, 'more scope')}")
        return f"; FAILED: {'; '.join(reasons)}" if reasons else ""

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


def plural(count: int, noun: str) -> str:
    """``1 scope``, ``2 scopes``."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def make_http_client(settings: Settings) -> httpx.AsyncClient:
    limit = settings.exchange.max_in_flight + 1  # the scopes' requests, and the listing beside them
    return httpx.AsyncClient(
        timeout=settings.exchange.timeout_s,
        limits=httpx.Limits(max_connections=limit, max_keepalive_connections=limit),
        headers={"User-Agent": USER_AGENT},
    )


@dataclass
class KnownScopes:
    """The scopes the previous cycle polled, per venue. The next cycle starts fetching them while it asks each
    venue what is listed, so the listing's round trip is off the critical path; and when a listing cannot be
    had, the last one known is polled rather than nothing."""

    by_venue: dict[str, list[Scope]] = field(default_factory=dict)


async def collect_once(
    settings: Settings,
    store: Store,
    gates: Gates | ExchangeGate,
    deadline: Deadline | float | None = None,
    known: KnownScopes | None = None,
) -> CycleReport:
    """One cycle with an HTTP client of its own; nothing is sent or waited for past ``deadline`` (epoch s,
    by default one interval from now), and the cycle ends by then with every scope fetched so far stored.
    ``gates``: every venue's gate, or one ExchangeGate for a single venue (tests)."""
    if deadline is None:
        deadline = time.time() + settings.collect.interval_s
    if not isinstance(deadline, Deadline):
        deadline = Deadline(deadline)
    if isinstance(gates, ExchangeGate):
        gates = Gates.of(gates)
    async with make_http_client(settings) as http:
        venues = make_venues(settings, http, gates, deadline)
        return await run_cycle(
            venues, store, known or KnownScopes(), deadline, settings.exchange.max_in_flight
        )


async def run_cycle(
    venues: Sequence[Venue], store: Store, known: KnownScopes, deadline: Deadline, max_in_flight: int
) -> CycleReport:
    """Fetch, store, report. No exception escapes: what one scope breaks fails that scope, and what breaks
    the cycle itself fails the cycle with every scope fetched so far still stored."""
    started_at, started = datetime.now(UTC), time.monotonic()
    fetched: dict[Scope, ScopeOutcome] = {}
    problem: str | None = None
    try:
        problem = await _fetch_all(venues, known, deadline, max_in_flight, fetched)
    except Exception as error:  # the rule: nothing escapes a cycle
        log.exception(
            "the cycle broke while fetching; storing the %d scopes fetched so far",
            len(fetched),
            extra={"scopes_fetched": len(fetched), "status": "failed"},
        )
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
    report = CycleReport(
        started_at=started_at,
        outcomes=outcomes,
        problem=problem,
        committed=committed,
        used_weight={
            venue.name: weight.used for venue in venues if (weight := venue.gate.used_weight) is not None
        },
        duration_s=time.monotonic() - started,
    )
    (log.info if report.ok else log.error)(report.summary(), extra=report.fields())
    return report


async def _fetch_all(
    venues: Sequence[Venue],
    known: KnownScopes,
    deadline: Deadline,
    max_in_flight: int,
    fetched: dict[Scope, ScopeOutcome],
) -> str | None:
    """Every scope's outcome into ``fetched`` by the deadline (a configured scope its venue does not list
    fails); returns the cycle's problem. Each venue's listing and scopes run side by side: a venue that is
    slow or down costs only itself."""
    limit = asyncio.Semaphore(max_in_flight)
    planned = await asyncio.gather(*(_plan(venue, known, limit) for venue in venues), return_exceptions=True)
    plans = [_contained(venue, plan) for venue, plan in zip(venues, planned, strict=True)]
    tasks = {scope: task for plan in plans for scope, task in plan[0].items()}
    await _wait_until(deadline, tasks, fetched)
    for entry in (entry for plan in plans for entry in plan[1]):
        failure = FatalExchangeError(f"not polled: {entry.reason}")
        fetched[entry.scope] = ScopeOutcome(entry.scope, [], error=failure)
    problems = [plan[2] for plan in plans if plan[2] is not None]
    return "; ".join(problems) if problems else None


Plan = tuple[dict[Scope, "asyncio.Task[ScopeOutcome]"], tuple[Unlisted, ...], str | None]


def _contained(venue: Venue, plan: Plan | BaseException) -> Plan:
    """A venue whose planning broke costs that venue, not the others' scopes."""
    if not isinstance(plan, BaseException):
        return plan
    if not isinstance(plan, Exception):  # cancellation, interpreter exit: not ours to swallow
        raise plan
    log.error(
        "%s: planning the cycle broke (%s: %s); the other venues go on",
        venue.name,
        type(plan).__name__,
        plan,
        exc_info=plan,
        extra={"venue": venue.name},
    )
    return {}, (), f"{venue.name}: {type(plan).__name__}: {plan}"


async def _plan(venue: Venue, known: KnownScopes, limit: asyncio.Semaphore) -> Plan:
    """One venue's tasks: the last known scopes start at once, the listing decides the rest."""
    last = known.by_venue.get(venue.name, [])
    early = {scope: asyncio.create_task(_fetch(venue, scope, limit)) for scope in last}
    try:
        try:
            listed = await venue.scopes()
        except Exception as error:  # the rule: a venue's listing costs only that venue
            log.exception("%s: the listing broke", venue.name, extra={"venue": venue.name})
            listed = Scopes([], (), f"{venue.name}: listing broke: {type(error).__name__}: {error}", True)
        scopes, problem = listed.scopes, listed.problem
        if listed.listing_failed and last:
            log.warning(
                "%s: polling the %d scopes of the last listing known instead",
                venue.name,
                len(last),
                extra={"venue": venue.name},
            )
            scopes, problem = last, None
        tasks = {
            scope: early.pop(scope) if scope in early else asyncio.create_task(_fetch(venue, scope, limit))
            for scope in scopes
        }
        known.by_venue[venue.name] = scopes
    finally:
        for unlisted_now in early.values():  # listed last cycle, not any more: expired
            unlisted_now.cancel()
    return tasks, listed.unlisted, problem


async def _wait_until(
    deadline: Deadline, tasks: dict[Scope, asyncio.Task[ScopeOutcome]], fetched: dict[Scope, ScopeOutcome]
) -> None:
    """Wait for the scopes' tasks until the deadline (which a stop request may bring forward); what is not
    done by then fails for this cycle, and everything done is kept."""
    pending: set[asyncio.Task[ScopeOutcome]] = set(tasks.values())
    while pending and not deadline.passed():
        _, pending = await asyncio.wait(pending, timeout=min(1.0, max(0.0, deadline.remaining())))
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for scope, task in tasks.items():
        if task.cancelled() or task.exception() is not None:
            late = FatalExchangeError("no answer by the cycle's deadline")
            log.error(
                "%s: %s; this scope failed this cycle, the others are stored",
                scope,
                late,
                extra=_about(scope),
            )
            fetched[scope] = ScopeOutcome(scope, [], error=late)
        else:
            fetched[scope] = task.result()


def _storage_problem(committed: Committed, rows: int, store: Store) -> str:
    if not committed.spooled:
        return f"{committed.lost_rows} rows LOST: spool full and database unavailable ({committed.problem})"
    pending = len(store.spool.pending())
    return (
        f"database unavailable ({committed.problem}); this cycle's {rows} rows are in the spool"
        f" ({pending} batches waiting) and will be written when it is back"
    )


async def _fetch(venue: Venue, scope: Scope, limit: asyncio.Semaphore) -> ScopeOutcome:
    """One scope's outcome, whatever its answer holds: what it breaks fails this scope only."""
    started = time.monotonic()
    try:
        return await _fetch_scope(venue, scope, limit)
    except Exception as error:  # the rule: one answer costs only itself
        log.exception(
            "%s: the answer could not be read; this scope failed this cycle, the others go on",
            scope,
            extra=_about(scope),
        )
        failure = FatalExchangeError(f"unreadable answer ({type(error).__name__}: {error})")
        return ScopeOutcome(scope, [], error=failure, duration_s=time.monotonic() - started)


async def _fetch_scope(venue: Venue, scope: Scope, limit: asyncio.Semaphore) -> ScopeOutcome:
    async with limit:
        started = time.monotonic()
        try:
            fetched = await venue.fetch(scope)
        except ExchangeError as error:
            if not isinstance(error, NotSentError):  # those are said once for the whole cycle
                log.error(
                    "%s: %s; this scope failed this cycle, the others go on",
                    scope,
                    error,
                    extra=_about(scope, status="failed", http_status=error.status, error_code=error.code),
                )
            elapsed = time.monotonic() - started
            return ScopeOutcome(scope, [], error=error, attempts=error.attempts, duration_s=elapsed)
    for rejection in fetched.rejections:
        log.warning(
            "%s: rejected a row, %s; the other rows are kept",
            scope,
            rejection,
            extra=_about(scope, symbol=rejection.symbol, field=rejection.field),
        )
    if fetched.empty:
        log.warning("%s: the venue returned no rows", scope, extra=_about(scope))
    elapsed = time.monotonic() - started
    return ScopeOutcome(
        scope, fetched.records, len(fetched.rejections), None, fetched.attempts, elapsed, fetched.rejections
    )


def _about(scope: Scope, **facts: object) -> dict[str, object]:
    """Log-record fields for a line about one scope (the JSON log format shows them as fields)."""
    return {"venue": scope.venue, "scope": scope.label, "pair": scope.label, **facts}


def _say_not_sent(outcomes: list[ScopeOutcome]) -> None:
    held = [(o.scope.venue, o.error) for o in outcomes if isinstance(o.error, NotSentError)]
    if held:
        reason = held[0][1].reason
        log.error(
            "%s not polled this cycle: %s",
            plural(len(held), "scope"),
            reason,
            extra={
                "scopes_not_sent": len(held),
                "venues": sorted({venue for venue, _ in held}),
                "reason": reason,
            },
        )
