"""The daemon: APScheduler runs one cycle per interval, on boundaries; SIGTERM/SIGINT end it cleanly."""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from datetime import UTC, datetime, timedelta

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from collector.config import Settings
from collector.cycle import collect_once
from collector.sink.postgres import PostgresSink

log = logging.getLogger("collector.schedule")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def interval_anchor(now: datetime, interval_s: int, offset_s: float) -> datetime:
    """The latest boundary at or before ``now``: a whole number of intervals since the epoch, plus the offset.

    With 60 s and an offset of 10 s cycles run at hh:mm:10, whatever time the daemon started.
    """
    since_epoch = (now - _EPOCH).total_seconds() - offset_s
    return _EPOCH + timedelta(seconds=since_epoch - since_epoch % interval_s + offset_s)


def run_daemon(settings: Settings, sink: PostgresSink) -> int:
    """Collect until SIGTERM or SIGINT; the cycle in flight finishes first. Returns the exit code."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the cycle in flight, then exiting", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    def cycle() -> None:
        try:
            asyncio.run(collect_once(settings, sink))
        except Exception:
            log.exception("cycle crashed; the next one runs on schedule")

    collect = settings.collect
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
    # The first cycle runs at once: after a restart, this minute's snapshot is still there to take.
    scheduler.add_job(cycle, trigger, id="collect", name="collect", next_run_time=now)
    scheduler.start()
    log.info(
        "collecting every %d s at %g s past each boundary; next cycles at %s",
        collect.interval_s,
        collect.offset_s,
        trigger.get_next_fire_time(None, now + timedelta(seconds=1)),
    )
    stop.wait()
    scheduler.shutdown(wait=True)
    log.info("stopped")
    return 0
