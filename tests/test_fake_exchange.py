"""The fake exchange behaves like the real one, over real HTTP: shapes, values, errors, faults, weight and
rate limits."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests.fake_exchange import (
    EXCHANGE_INFO,
    OPEN_INTEREST,
    PING,
    TIME,
    WEIGHT_HEADER,
    FakeExchange,
    Fault,
    empty_list,
    html_page,
    http_error,
    malformed_rows,
    truncated_json,
)

MINUTE = 1_766_736_000_000  # 2025-12-26 08:00 UTC
SYMBOL = re.compile(r"(?P<underlying>[A-Z]+)-(?P<expiry>\d{6})-(?P<strike>\d+(?:\.\d*[1-9])?)-(?P<side>[CP])")
ETH = {"underlyingAsset": "ETH", "expiration": "251226"}


@pytest.fixture
def exchange() -> Iterator[FakeExchange]:
    with FakeExchange(minute_ms=MINUTE) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def client(exchange: FakeExchange) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=exchange.base_url, timeout=2.0) as http:
        yield http


def open_interest(client: httpx.Client, underlying: str = "ETH", expiry: str = "251226") -> httpx.Response:
    return client.get(OPEN_INTEREST, params={"underlyingAsset": underlying, "expiration": expiry})


def yymmdd(expiry_date_ms: int) -> str:
    return datetime.fromtimestamp(expiry_date_ms / 1000, UTC).strftime("%y%m%d")


# ------------------------------------------------------------------------------------------- normal answers


def test_exchange_info_lists_every_pair(exchange: FakeExchange, client: httpx.Client) -> None:
    response = client.get(EXCHANGE_INFO)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    info = response.json()
    assert isinstance(info["serverTime"], int)
    assert {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400} in info[
        "rateLimits"
    ]
    bases = {contract["underlying"]: contract["baseAsset"] for contract in info["optionContracts"]}
    assert set(bases.values()) == {"BTC", "ETH", "BNB", "SOL", "XRP", "DOGE"}
    symbols = info["optionSymbols"]
    assert {(bases[s["underlying"]], yymmdd(s["expiryDate"])) for s in symbols} == set(exchange.pairs())
    assert len(symbols) == len(exchange.all_rows())
    for entry in symbols:
        when = datetime.fromtimestamp(entry["expiryDate"] / 1000, UTC)
        assert (when.hour, when.minute) == (8, 0)
        match = SYMBOL.fullmatch(entry["symbol"])
        assert match, entry["symbol"]
        assert re.fullmatch(r"\d+\.\d{8}", entry["strikePrice"])
        assert Decimal(entry["strikePrice"]) == Decimal(match["strike"])
        assert entry["side"] == {"C": "CALL", "P": "PUT"}[match["side"]]
        assert entry["underlying"] == f"{match['underlying']}USDT"


def test_open_interest_serves_rows_for_every_pair(exchange: FakeExchange, client: httpx.Client) -> None:
    for underlying, expiry in exchange.pairs():
        response = open_interest(client, underlying, expiry)
        assert response.status_code == 200
        rows = response.json()
        assert rows == exchange.rows_for(underlying, expiry)
        assert rows, (underlying, expiry)
        for row in rows:
            assert set(row) == {"symbol", "sumOpenInterest", "sumOpenInterestUsd", "timestamp"}
            assert all(isinstance(value, str) for value in row.values())
            assert row["timestamp"] == str(MINUTE)
            assert row["symbol"].startswith(f"{underlying}-{expiry}-")


def test_universe_is_big_and_realistic(exchange: FakeExchange) -> None:
    rows = exchange.all_rows()
    pairs = exchange.pairs()
    assert len(rows) >= 3000
    assert len(pairs) >= 40
    assert pairs == sorted(pairs)
    assert len({row["symbol"] for row in rows}) == len(rows)
    strikes = {SYMBOL.fullmatch(row["symbol"])["strike"] for row in rows}  # type: ignore[index]
    assert {"100000", "2.5", "2.55", "152.5", "0.32"} <= strikes
    assert any(re.fullmatch(r"0\.\d\d5", strike) for strike in strikes)  # "0.005"-type: DOGE 0.155, ...
    values = [row["sumOpenInterest"] for row in rows]
    assert "0" in values
    assert all(re.fullmatch(r"\d+(\.\d{1,2})?", value) for value in values)
    assert any(re.fullmatch(r"\d+\.\d{2}", value) for value in values)
    assert any(re.fullmatch(r"\d+\.\d{8,10}", row["sumOpenInterestUsd"]) for row in rows)


def test_values_are_fixed_per_minute_and_move_between_minutes(exchange: FakeExchange) -> None:
    first = exchange.all_rows(MINUTE)
    assert exchange.all_rows(MINUTE) == first
    assert FakeExchange(minute_ms=MINUTE).all_rows() == first
    later = exchange.all_rows(MINUTE + 60_000)
    assert [row["symbol"] for row in later] == [row["symbol"] for row in first]
    assert [row["sumOpenInterest"] for row in later] != [row["sumOpenInterest"] for row in first]
    assert {row["timestamp"] for row in later} == {str(MINUTE + 60_000)}


def test_minute_follows_the_wall_clock_unless_set(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.minute_ms = None
    before = int(time.time() // 60) * 60_000
    served = int(open_interest(client).json()[0]["timestamp"])
    after = int(time.time() // 60) * 60_000
    assert served in (before, after)
    exchange.minute_ms = MINUTE + 120_000
    assert open_interest(client).json()[0]["timestamp"] == str(MINUTE + 120_000)


def test_set_open_interest_overrides_a_symbol(exchange: FakeExchange, client: httpx.Client) -> None:
    symbol = exchange.rows_for("ETH", "251226")[3]["symbol"]
    exchange.set_open_interest(symbol, "4.01", "4880.2985615624")
    row = next(row for row in open_interest(client).json() if row["symbol"] == symbol)
    assert row == {
        "symbol": symbol,
        "sumOpenInterest": "4.01",
        "sumOpenInterestUsd": "4880.2985615624",
        "timestamp": str(MINUTE),
    }
    assert exchange.rows_for("ETH", "251226")[3] == row
    with pytest.raises(KeyError):
        exchange.set_open_interest("ETH-991231-1-C", "1", "1")


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"expiration": "251226"}, 400, -1102),
        ({"underlyingAsset": "", "expiration": "251226"}, 400, -1102),
        ({"underlyingAsset": "ETH"}, 400, -1102),
        ({"underlyingAsset": "ETHUSDT", "expiration": "251226"}, 400, -1128),
        ({"underlyingAsset": "ADA", "expiration": "251226"}, 400, -1128),
    ],
)
def test_bad_open_interest_parameters(
    client: httpx.Client, params: dict[str, str], status: int, code: int
) -> None:
    response = client.get(OPEN_INTEREST, params=params)
    assert response.status_code == status
    assert response.json()["code"] == code
    if code == -1102:
        assert response.json()["msg"].startswith("Mandatory parameter '")


def test_unknown_expiry_is_an_empty_list(client: httpx.Client) -> None:
    response = open_interest(client, "ETH", "991231")
    assert (response.status_code, response.json()) == (200, [])


def test_time_ping_and_unknown_paths(client: httpx.Client) -> None:
    assert abs(client.get(TIME).json()["serverTime"] - time.time() * 1000) < 5_000
    assert client.get(PING).json() == {}
    missing = client.get("/eapi/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["code"] == -1000


# ------------------------------------------------------------------------------------------- weight, records


def test_weight_header_counts_the_minute(client: httpx.Client) -> None:
    minute = int(time.time() // 60)
    weights = [int(client.get(path).headers[WEIGHT_HEADER]) for path in (PING, EXCHANGE_INFO, TIME, PING)]
    if int(time.time() // 60) == minute:  # a new minute starts a new count
        assert weights == list(range(weights[0], weights[0] + 4))


def test_requests_are_recorded_with_their_status(exchange: FakeExchange, client: httpx.Client) -> None:
    open_interest(client)
    client.get(OPEN_INTEREST)
    client.get(PING)
    assert [(r.path, r.status) for r in exchange.requests] == [
        (OPEN_INTEREST, 200),
        (OPEN_INTEREST, 400),
        (PING, 200),
    ]
    assert exchange.requests[0].params == ETH
    assert exchange.requests[0].at <= exchange.requests[1].at
    assert [r.params for r in exchange.requests_to(OPEN_INTEREST)] == [ETH, {}]


def test_max_in_flight_and_delay(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.delay_s = 0.25
    statuses: list[int] = []

    def call() -> None:
        statuses.append(client.get(PING).status_code)

    threads = [threading.Thread(target=call) for _ in range(5)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 5
    assert 0.25 <= time.monotonic() - started < 1.0  # together, not one after the other
    assert exchange.max_in_flight == 5


# ------------------------------------------------------------------------------------------- faults


def test_http_error_with_retry_after(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(http_error(429, -1008, "Too many requests.", retry_after=2))
    response = open_interest(client)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "2"
    assert response.headers["content-type"] == "application/json"
    assert WEIGHT_HEADER in response.headers
    assert response.json() == {"code": -1008, "msg": "Too many requests."}
    assert exchange.requests[-1].status == 429
    assert "Retry-After" not in http_error(418, -1003, "banned").headers


def test_html_page(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(html_page(502))
    exchange.inject(html_page())
    for status in (502, 200):
        response = open_interest(client)
        assert response.status_code == status
        assert response.headers["content-type"].startswith("text/html")
        assert "<html>" in response.text
        assert "502 Bad Gateway" in response.text


def test_truncated_json(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(truncated_json())
    response = open_interest(client)
    assert response.status_code == 200
    assert response.text.startswith('[{"symbol":')
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.text)


def test_empty_list(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(empty_list())
    assert open_interest(client).json() == []
    assert open_interest(client).json() == exchange.rows_for("ETH", "251226")


def test_malformed_rows_follow_the_good_ones(exchange: FakeExchange, client: httpx.Client) -> None:
    bad = ({"symbol": "ETH-251226-3000-C", "sumOpenInterest": None}, {"symbol": "nonsense"})
    exchange.inject(malformed_rows(*bad))
    assert open_interest(client).json() == [*exchange.rows_for("ETH", "251226"), *bad]


def test_dropped_connection(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(Fault(drop_connection=True))
    with pytest.raises(httpx.TransportError):
        open_interest(client)
    assert exchange.requests[-1].status == 0
    assert open_interest(client).status_code == 200


def test_fault_delay_makes_a_timeout_then_a_normal_answer(
    exchange: FakeExchange, client: httpx.Client
) -> None:
    exchange.inject(Fault(delay_s=0.3))
    with pytest.raises(httpx.TimeoutException):
        client.get(OPEN_INTEREST, params=ETH, timeout=0.05)
    exchange.inject(Fault(delay_s=0.05))
    started = time.monotonic()
    response = open_interest(client)
    assert time.monotonic() - started >= 0.05
    assert response.json() == exchange.rows_for("ETH", "251226")


def test_fault_headers_override_the_weight(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(Fault(headers={"x-mbx-used-weight-1m": "2399"}))
    response = open_interest(client)
    assert response.headers.get_list(WEIGHT_HEADER) == ["2399"]
    assert response.json() == exchange.rows_for("ETH", "251226")


def test_times_and_matchers(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(http_error(503, -1001, "Service Unavailable."), underlying="BTC", times=2)
    exchange.inject(http_error(500, -1000, "Unknown error"), expiry="260102", times=None)
    exchange.inject(empty_list(), path=EXCHANGE_INFO)
    assert open_interest(client, "ETH", "251226").status_code == 200
    assert [open_interest(client, "BTC", "251226").status_code for _ in range(3)] == [503, 503, 200]
    assert [open_interest(client, "BTC", "260102").status_code for _ in range(3)] == [500, 500, 500]
    assert client.get(EXCHANGE_INFO).json() == []
    assert isinstance(client.get(EXCHANGE_INFO).json(), dict)
    exchange.clear_faults()
    assert open_interest(client, "BTC", "260102").status_code == 200


def test_faults_queue_in_order(exchange: FakeExchange, client: httpx.Client) -> None:
    exchange.inject(http_error(429, -1008, "Too many requests."))
    exchange.inject(http_error(418, -1003, "Way too many requests; IP banned until 1766736060000."))
    statuses = [open_interest(client).status_code for _ in range(3)]
    assert statuses == [429, 418, 200]
    with pytest.raises(ValueError):
        exchange.inject(empty_list(), times=0)


def test_stop_hangs_up_pooled_connections() -> None:
    with FakeExchange(minute_ms=MINUTE) as exchange, httpx.Client(base_url=exchange.base_url) as http:
        assert http.get(PING).status_code == 200
        exchange.stop()
        with pytest.raises(httpx.TransportError):
            http.get(PING)
        with pytest.raises(RuntimeError):
            _ = exchange.base_url


# ------------------------------------------------------------------------------------------- rate limits

T0 = 1_766_736_000.0  # 2025-12-26 08:00:00 UTC: where a 2 s, a minute and an hour window all start
TWO_SECONDS = {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 2, "limit": 20}
TOO_MANY = (
    "Too many requests; current limit of IP(127.0.0.1) is 20 requests per 2 SECOND. "
    "Please use WebSocket Streams for live updates to avoid polling the API."
)
USED_2S = "X-MBX-USED-WEIGHT-2S"


class Clock:
    """A clock the test sets, in seconds since the epoch."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0 + 0.25)


@contextmanager
def limited(
    clock: Clock,
    limits: list[dict[str, Any]],
    *,
    enforce: bool | None = None,
    ban_after_429s: int = 3,
    ban_s: float = 5.0,
) -> Iterator[FakeExchange]:
    """A fake exchange with these rate limits, on ``clock``."""
    fake = FakeExchange(
        minute_ms=MINUTE,
        rate_limits=limits,
        enforce=enforce,
        ban_after_429s=ban_after_429s,
        ban_s=ban_s,
        clock=clock,
    )
    with fake:
        yield fake
    assert fake.server_errors == []


def used(response: httpx.Response) -> dict[str, str]:
    """The used-weight headers, by name as sent."""
    raw = [(name.decode(), value.decode()) for name, value in response.headers.raw]
    return {name: value for name, value in raw if name.lower().startswith("x-mbx-used-weight")}


def ping(client: httpx.Client, times: int = 1) -> list[int]:
    return [client.get(PING).status_code for _ in range(times)]


def test_default_rate_limits_are_listed_and_counted_not_enforced(client: httpx.Client) -> None:
    response = client.get(EXCHANGE_INFO)
    assert [limit["rateLimitType"] for limit in response.json()["rateLimits"]] == ["REQUEST_WEIGHT", "ORDERS"]
    assert list(used(response)) == [WEIGHT_HEADER]
    with pytest.raises(ValueError):
        FakeExchange(enforce=True)
    with pytest.raises(ValueError):
        FakeExchange(rate_limits=[{"rateLimitType": "REQUEST_WEIGHT", "interval": "WEEK", "intervalNum": 1}])


def test_used_weight_header_per_window_and_windows_reset(clock: Clock) -> None:
    limits: list[dict[str, Any]] = [
        TWO_SECONDS,
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "HOUR", "intervalNum": 1, "limit": 100_000},
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "DAY", "intervalNum": 1, "limit": 1_000_000},
        {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
    ]
    names = ["X-MBX-USED-WEIGHT-2S", "X-MBX-USED-WEIGHT-1M", "X-MBX-USED-WEIGHT-1H", "X-MBX-USED-WEIGHT-1D"]

    def weights() -> list[int]:
        response = client.get(PING)
        assert list(used(response)) == names  # one header per REQUEST_WEIGHT limit, nothing for ORDERS
        return [int(value) for value in used(response).values()]

    with limited(clock, limits) as fake, httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
        info = client.get(EXCHANGE_INFO)
        assert info.json()["rateLimits"] == limits
        assert [int(value) for value in used(info).values()] == [1, 1, 1, 1]  # the request itself counts
        assert weights() == [2, 2, 2, 2]
        clock.now = T0 + 1.999
        assert weights() == [3, 3, 3, 3]
        clock.now = T0 + 2.0  # a new 2 s window
        assert weights() == [1, 4, 4, 4]
        clock.now = T0 + 60
        assert weights() == [1, 1, 5, 5]
        clock.now = T0 + 3600
        assert weights() == [1, 1, 1, 6]
        clock.now = T0 + 16 * 3600  # midnight UTC
        assert weights() == [1, 1, 1, 1]


def test_over_the_limit_is_429_with_retry_after(clock: Clock) -> None:
    with limited(clock, [TWO_SECONDS]) as fake, httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
        assert ping(client, 20) == [200] * 20
        refused = client.get(PING)
        assert refused.status_code == 429
        assert refused.json() == {"code": -1003, "msg": TOO_MANY}
        assert refused.headers["Retry-After"] == "2"  # 1.75 s left in the window, rounded up
        assert refused.headers[USED_2S] == "21"  # the 429 counts weight 1
        clock.now = T0 + 1.5
        later = open_interest(client)
        assert (later.status_code, later.headers["Retry-After"], later.headers[USED_2S]) == (429, "1", "22")
        clock.now = T0 + 2.0
        fresh = open_interest(client)
        assert (fresh.status_code, fresh.headers[USED_2S]) == (200, "1")
        assert "Retry-After" not in fresh.headers
        assert fresh.json() == fake.rows_for("ETH", "251226")
        assert (fake.count_status(429), fake.count_status(200)) == (2, 21)
        assert fake.requests[-1].status == 200


def test_limits_counted_but_not_enforced(clock: Clock) -> None:
    with limited(clock, [TWO_SECONDS], enforce=False) as fake:
        with httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
            assert ping(client, 24) == [200] * 24
            assert client.get(PING).headers[USED_2S] == "25"
        assert fake.count_status(429) == 0


def test_repeated_429s_get_the_ip_banned_until_the_ban_ends(clock: Clock) -> None:
    with limited(clock, [TWO_SECONDS], ban_after_429s=3, ban_s=5.0) as fake:
        with httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
            assert ping(client, 20) == [200] * 20
            assert ping(client, 4) == [429] * 4  # more than 3 in the window ...
            banned = client.get(PING)  # ... and the next request is banned
            until = math.ceil((T0 + 0.25 + 5.0) * 1000)
            message = (
                f"Way too many requests; IP(127.0.0.1) banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans."
            )
            assert banned.status_code == 418
            assert banned.json() == {"code": -1003, "msg": message}
            assert banned.headers["Retry-After"] == "5"
            assert fake.banned_until_ms == until
            clock.now = T0 + 4.0  # a new window does not end the ban, nor move it
            during = open_interest(client)
            assert (during.status_code, during.json()["msg"]) == (418, message)
            assert (during.headers["Retry-After"], during.headers[USED_2S]) == ("2", "1")
            clock.now = until / 1000 - 0.001
            assert ping(client) == [418]
            clock.now = until / 1000
            assert ping(client) == [200]
            assert fake.banned_until_ms is None
        assert [fake.count_status(status) for status in (200, 429, 418)] == [21, 4, 3]


def test_faults_win_over_rate_limits_and_still_count(clock: Clock) -> None:
    one_second = {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 2}
    with limited(clock, [one_second], ban_after_429s=0) as fake:
        with httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
            assert ping(client, 2) == [200, 200]
            fake.inject(http_error(503, -1001, "Service Unavailable."))
            faulted = open_interest(client)
            assert (faulted.status_code, faulted.headers["X-MBX-USED-WEIGHT-1S"]) == (503, "3")
            assert ping(client) == [429]  # more than 0 429s: the next request starts a ban
            fake.inject(Fault(drop_connection=True))
            with pytest.raises(httpx.TransportError):
                open_interest(client)
            assert ping(client) == [418]
            fake.inject(empty_list())
            during_ban = open_interest(client)
            assert (during_ban.status_code, during_ban.json()) == (200, [])
            assert during_ban.headers["X-MBX-USED-WEIGHT-1S"] == "7"
        assert [fake.count_status(status) for status in (200, 503, 429, 418, 0)] == [3, 1, 1, 1, 1]


def test_windows_follow_the_wall_clock() -> None:
    limits: list[dict[str, Any]] = [
        {"rateLimitType": "REQUEST_WEIGHT", "interval": "SECOND", "intervalNum": 1, "limit": 3}
    ]
    fake = FakeExchange(minute_ms=MINUTE, rate_limits=limits)
    with fake, httpx.Client(base_url=fake.base_url, timeout=2.0) as client:
        second = math.floor(time.time())
        responses = [client.get(PING) for _ in range(4)]
        if math.floor(time.time()) == second:  # all in one window
            assert [r.status_code for r in responses] == [200, 200, 200, 429]
            assert [r.headers["X-MBX-USED-WEIGHT-1S"] for r in responses] == ["1", "2", "3", "4"]
            assert responses[-1].headers["Retry-After"] == "1"
        time.sleep(math.floor(time.time()) + 1.005 - time.time())  # into the next second
        fresh = client.get(PING)
        assert (fresh.status_code, fresh.headers["X-MBX-USED-WEIGHT-1S"]) == (200, "1")
