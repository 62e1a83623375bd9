"""Prometheus metrics and a health check, served on one port: ``/metrics`` and ``/healthz``."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

from collector.cycle import CycleReport, ScopeOutcome
from collector.errors import ExchangeError, NotSentError
from collector.sink.spool import Spool

# Every counter and histogram would also export a ``_created`` gauge (when it was made): twice the lines on
# /metrics for a value Prometheus itself does not use.
disable_created_metrics()  # type: ignore[no-untyped-call]


def failure_reason(error: ExchangeError) -> str:
    """A small, fixed set of label values for why a scope failed."""
    if isinstance(error, NotSentError):
        return "not_sent"
    if error.hold == "ban":
        return "banned"
    if error.hold == "pause":
        return "rate_limited"
    if error.status is None:
        return "network"
    if error.status >= 500:
        return "server_error"
    if error.code is not None:
        return "exchange_error"
    return "bad_response" if error.status < 300 else "client_error"


class Metrics:
    def __init__(self, healthy_within_s: float, clock: Callable[[], float] = time.time) -> None:
        self.registry = CollectorRegistry()
        self.healthy_within_s = healthy_within_s
        self.clock = clock
        self.started = clock()
        self.last_success = 0.0
        self.newest: dict[tuple[str, str], float] = {}
        r = self.registry
        self.cycles = Counter("oi_cycles", "Collection cycles, by outcome", ["outcome"], registry=r)
        self.scopes = Counter(
            "oi_scopes",
            "Scopes polled (one request's worth: a Binance pair, a Deribit currency, an OKX family, a Bybit"
            " coin), by venue, status and failure reason",
            ["venue", "status", "reason"],
            registry=r,
        )
        self.rows_stored = Counter(
            "oi_rows_stored", "Rows stored (new, changed or unchanged), by venue", ["venue"], registry=r
        )
        self.rows_rejected = Counter(
            "oi_rows_rejected", "Malformed rows skipped, by venue", ["venue"], registry=r
        )
        self.rows_refused = Counter(
            "oi_rows_refused", "Rows the database refused for their content, set aside", registry=r
        )
        self.duration = Histogram(
            "oi_cycle_duration_seconds", "Cycle duration", registry=r,
            buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
        )  # fmt: skip
        self.snapshot = Gauge(
            "oi_last_snapshot_timestamp_seconds",
            "Newest snapshot stored (the venue's own time), by venue and scope",
            ["venue", "scope"],
            registry=r,
        )
        self.spool_bytes = Gauge("oi_spool_bytes", "Bytes waiting in the spool", registry=r)
        self.spool_batches = Gauge("oi_spool_batches", "Batches waiting in the spool", registry=r)
        self.used_weight = Gauge(
            "oi_exchange_used_weight", "The venue's last reported used request weight", ["venue"], registry=r
        )

    def observe(self, report: CycleReport, spool: Spool) -> None:
        self.cycles.labels("ok" if report.ok else "failed").inc()
        self.duration.observe(report.duration_s)
        self.rows_refused.inc(report.rows_refused)
        for outcome in report.outcomes:
            self._observe_scope(outcome, report.stored)
        self.spool_batches.set(len(spool.pending()))
        self.spool_bytes.set(spool.size_bytes())
        for venue, used in report.used_weight.items():
            self.used_weight.labels(venue).set(used)

    def _observe_scope(self, outcome: ScopeOutcome, stored: bool) -> None:
        venue = outcome.scope.venue
        self.rows_rejected.labels(venue).inc(outcome.rejected)
        if outcome.error is not None:
            self.scopes.labels(venue, "failed", failure_reason(outcome.error)).inc()
            return
        self.scopes.labels(venue, "ok", "").inc()
        if not stored or not outcome.records:
            return
        self.rows_stored.labels(venue).inc(len(outcome.records))
        self.last_success = self.clock()
        key = (venue, outcome.scope.label)
        newest = max(record.ts for record in outcome.records).timestamp()
        self.newest[key] = max(newest, self.newest.get(key, 0.0))
        self.snapshot.labels(*key).set(self.newest[key])

    def health(self) -> tuple[bool, str]:
        """Healthy while a scope was stored in the last ``healthy_within_s`` (or the daemon is younger)."""
        since = self.last_success or self.started
        silent = self.clock() - since
        if silent <= self.healthy_within_s:
            return True, "ok"
        return False, f"no scope of any venue stored for {silent:.0f} s (limit {self.healthy_within_s:g} s)"


def serve(metrics: Metrics, port: int, host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """Start the /metrics and /healthz server in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                self._reply(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                healthy, reason = metrics.health()
                self._reply(200 if healthy else 503, (reason + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every 15 s would drown the log

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
