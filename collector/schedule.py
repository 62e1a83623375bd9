"""The daemon: APScheduler runs one cycle per interval, on boundaries; SIGTERM/SIGINT end it cleanly."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.config import Settings
from collector.cycle import KnownScopes, collect_once
from collector.deadline import Deadline
from collector.metrics import Metrics, serve
from collector.sink.store import Store
from collector.venues import Gates

log = logging.getLogger("collector.schedule")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_WRITE_MARGIN_S = 1.0  # a cycle stops fetching this long before the next one starts, to leave time to write
_STOP_FETCH_S = 5.0  # after SIGTERM, the cycle in flight fetches this long at most, then stores what it has


def interval_anchor(now: datetime, interval_s: int, offset_s: float) -> datetime:
    """The latest boundary at or before ``now``: a whole number of intervals since the epoch, plus the offset.

    With 60 s and an offset of 10 s cycles run at hh:mm:10, whatever time the daemon started.
    """
    since_epoch = (now - _EPOCH).total_seconds() - offset_s
    return _EPOCH + timedelta(seconds=since_epoch - since_epoch % interval_s + offset_s)


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
        return trim
    except (OSError, AttributeError):  # not glibc: nothing to trim
        return None


_MALLOC_TRIM = _malloc_trim()


def release_freed_memory() -> None:
    """Hand the heap a cycle freed back to the OS. glibc keeps freed blocks in per-thread arenas, and each
    cycle's event loop and threads leave a few MB there; without this, RSS creeps up for the first hundred
    cycles before it levels off."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Daemon:
    """Cycles on the schedule until asked to stop; then the cycle in flight finishes, within a time limit."""

    def __init__(
        self, settings: Settings, store: Store, gates: Gates, prepare: Callable[[], bool] | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.gates = gates
        self.prepare = prepare  # tried before cycles until it returns True (the schema migration)
        # The caller has just tried it: the next try waits an interval (each try logs why it failed).
        self.prepare_after = time.monotonic() + settings.collect.interval_s
        self.known = KnownScopes()
        self.deadline: Deadline | None = None  # the cycle in flight's, which a stop request brings forward
        self.metrics: Metrics | None = None
        self.stop = threading.Event()
        self.idle = threading.Event()
        self.idle.set()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)
        host, port = self.settings.metrics.host, self.settings.metrics.port
        if port:
            self.metrics = Metrics(self.settings.metrics.healthy_within_s)
            try:
                serve(self.metrics, port, host)
                log.info("metrics on http://%s:%d/metrics, health on /healthz", host, port,
                         extra={"host": host, "port": port})  # fmt: skip
            except OSError as error:  # collecting matters more than being watched
                log.error(
                    "cannot serve metrics on %s:%d (%s): collecting without /metrics and /healthz",
                    host,
                    port,
                    error.strerror or error,
                    extra={"host": host, "port": port},
                )
        self._prepare()
        self.store.flush()  # a spool left by an earlier process goes first
        collect = self.settings.collect
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            # One cycle at a time; a cycle that starts late runs once, never twice in a row to catch up.
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": collect.interval_s},
        )
        now = datetime.now(UTC)
        trigger = IntervalTrigger(
            seconds=collect.interval_s, start_date=interval_anchor(now, collect.interval_s, collect.offset_s)
        )
        first = trigger.get_next_fire_time(None, now)
        assert first is not None
        scheduler.add_job(self._cycle, trigger, id="collect")
        # Run at once as well, so a restart does not lose this minute, unless the next boundary is near. A job
        # of its own: giving the interval job next_run_time=now would move every later cycle off the boundary
        # (an interval trigger counts from its previous fire time). One worker, so they never overlap.
        if (first - now).total_seconds() > collect.interval_s / 4:
            scheduler.add_job(self._cycle, id="collect-at-start")
        scheduler.start()
        log.info("collecting every %d s at %g s past each boundary; next at %s", collect.interval_s,
                 collect.offset_s, first)  # fmt: skip
        self.stop.wait()
        scheduler.shutdown(wait=False)
        return self._finish()

    def _request_stop(self, signum: int, _frame: object) -> None:
        # The cycle in flight stops fetching soon and stores every pair fetched so far, well within the
        # shutdown timeout.
        fetch_s = min(_STOP_FETCH_S, self.settings.collect.shutdown_timeout_s / 3)
        log.info(
            "received %s: the cycle in flight stops fetching within %g s and stores what it has, then"
            " the collector exits",
            signal.Signals(signum).name,
            fetch_s,
        )
        if self.deadline is not None:
            self.deadline.cut(time.time() + fetch_s)
        self.stop.set()

    def _cycle(self) -> None:
        self.idle.clear()
        try:
            if self.stop.is_set():
                return
            self._prepare()
            self.deadline = Deadline(self._deadline())
            report = asyncio.run(
                collect_once(self.settings, self.store, self.gates, self.deadline, self.known)
            )
            if self.metrics is not None:
                self.metrics.observe(report, self.store.spool)
        except Exception:
            log.exception("cycle crashed; the next one runs on schedule", extra={"status": "failed"})
        finally:
            release_freed_memory()
            self.idle.set()

    def _deadline(self) -> float:
        """Epoch seconds by which this cycle must be done fetching: just before the next boundary."""
        collect = self.settings.collect
        now = datetime.now(UTC)
        this_start = interval_anchor(now, collect.interval_s, collect.offset_s)
        next_start = this_start + timedelta(seconds=collect.interval_s)
        return max(next_start.timestamp() - _WRITE_MARGIN_S, now.timestamp() + 1.0)

    def _prepare(self) -> None:
        """Try the pending preparation; until it succeeds, cycles still collect (into the spool)."""
        if self.prepare is None or time.monotonic() < self.prepare_after:
            return
        if self.prepare():
            self.prepare = None
        else:
            self.prepare_after = time.monotonic() + self.settings.collect.interval_s

    def _finish(self) -> int:
        timeout = self.settings.collect.shutdown_timeout_s
        if not self.idle.wait(timeout):
            log.error(
                "the cycle in flight did not finish within %g s; exiting without it",
                timeout,
                extra={"shutdown_timeout_s": timeout},
            )
            logging.shutdown()
            os._exit(0)  # the executor's worker thread would otherwise hold the interpreter open
        flushed = self.store.flush()
        if flushed.pending:
            log.warning(
                "%d batches stay in the spool for next time: %s",
                flushed.pending,
                flushed.problem,
                extra={"batches": flushed.pending},
            )
        log.info("stopped")
        return 0
