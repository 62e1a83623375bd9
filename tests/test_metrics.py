"""/metrics and /healthz: where they listen, and what a failed scope is counted as, by venue."""

from __future__ import annotations

import httpx
import pytest

from collector.errors import ExchangeError, FatalExchangeError, NotSentError, RetriableExchangeError
from collector.metrics import Metrics, failure_reason, serve


def test_metrics_listen_on_the_host_asked_for_127_0_0_1_by_default() -> None:
    server = serve(Metrics(300.0), 0)
    try:
        host, port = server.server_address[:2]
        assert host == "127.0.0.1"
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5.0).text == "ok\n"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (RetriableExchangeError("x", status=418, hold="ban"), "banned"),
        (RetriableExchangeError("x", status=403, hold="ban"), "banned"),  # Bybit's ban
        (RetriableExchangeError("x", status=200, code=50011, hold="pause"), "rate_limited"),  # OKX on 200
        (RetriableExchangeError("x", status=429, hold="pause"), "rate_limited"),
        (RetriableExchangeError("x", status=503), "server_error"),
        (RetriableExchangeError("x"), "network"),
        (FatalExchangeError("x", status=200, code=10001), "exchange_error"),
        (FatalExchangeError("x", status=200), "bad_response"),
        (FatalExchangeError("x", status=404), "client_error"),
        (NotSentError("x", "banned"), "not_sent"),
    ],
)
def test_a_failed_scope_is_counted_by_what_the_venue_asked_of_us(error: ExchangeError, reason: str) -> None:
    assert failure_reason(error) == reason
