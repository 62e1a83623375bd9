"""A fake Binance options exchange: a real HTTP server on 127.0.0.1 that speaks the eapi market-data JSON.

Serves ``exchangeInfo``, ``openInterest``, ``time`` and ``ping`` with the exchange's shapes (every
``openInterest`` field a string, ``strikePrice`` with 8 decimals, ``expiryDate`` at 08:00 UTC) and the
``X-MBX-USED-WEIGHT-1M`` header; faults (error statuses, HTML pages, truncated JSON, malformed rows, delays,
dropped connections) can be injected per path and pair. Values are deterministic per (symbol, minute).

Given ``rate_limits``, it also counts REQUEST_WEIGHT per epoch-aligned window, sends one
``X-MBX-USED-WEIGHT-{intervalNum}{letter}`` header per limit and (unless ``enforce=False``) answers like the
exchange when a limit is broken: 429 with ``Retry-After``, then, after more than ``ban_after_429s`` of them
in a window, 418 "banned until <ms>" for ``ban_s`` seconds. Injected faults win over rate limiting.
Standard library only, so it can run anywhere the tests run.
"""

from __future__ import annotations

import hashlib
import json
import math
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, urlsplit

EXCHANGE_INFO = "/eapi/v1/exchangeInfo"
OPEN_INTEREST = "/eapi/v1/openInterest"
TIME = "/eapi/v1/time"
PING = "/eapi/v1/ping"
WEIGHT_HEADER = "X-MBX-USED-WEIGHT-1M"
WEIGHTS: dict[str, int] = {EXCHANGE_INFO: 1, OPEN_INTEREST: 1, TIME: 1, PING: 1}
DROPPED = 0  # Request.status of a request whose connection was dropped without an answer

_MINUTE_MS = 60_000
_SETTLEMENT_HOUR = 8  # options settle at 08:00 UTC
_JSON = "application/json"
_HTML = "text/html; charset=utf-8"

# Weeklies, monthlies (last Friday) and quarterlies; BTC and ETH list more of them than the others.
_MAJOR_EXPIRIES = ("251226", "260102", "260109", "260116", "260130", "260227", "260327", "260626", "260925")
_MINOR_EXPIRIES = ("251226", "260102", "260109", "260130", "260227", "260327")
DEFAULT_UNIVERSE: dict[str, list[str]] = {
    "BTC": [*_MAJOR_EXPIRIES, "261225"],
    "ETH": [*_MAJOR_EXPIRIES, "261225"],
    "BNB": list(_MINOR_EXPIRIES),
    "SOL": list(_MINOR_EXPIRIES),
    "XRP": list(_MINOR_EXPIRIES),
    "DOGE": list(_MINOR_EXPIRIES),
}


# ---------------------------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class Fault:
    """What to do instead of (or on top of) the normal answer.

    ``body`` wins over ``json_body``, which wins over the normal answer; either is sent with ``status``.
    Without them, a ``status`` other than 200 is sent with the normal body, and ``extra_rows`` follow the
    normal rows.
    """

    status: int = 200  # HTTP status to send
    body: str | None = None  # raw body text instead of the normal JSON (HTML page, truncated JSON, ...)
    json_body: object | None = None  # JSON value instead of the normal one
    headers: dict[str, str] = field(default_factory=dict)  # extra headers; override the normal ones
    delay_s: float = 0.0  # sleep this long before answering
    drop_connection: bool = False  # close the socket without any HTTP response
    drip_s: float = 0.0  # send the body one byte at a time, this long apart (never trips a read timeout)
    extra_rows: tuple[dict[str, object], ...] = ()  # appended to the normal openInterest rows


def http_error(status: int, code: int, msg: str, retry_after: int | None = None) -> Fault:
    """The exchange's JSON error, e.g. ``http_error(429, -1008, "Too many requests.", retry_after=2)``."""
    headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
    return Fault(status=status, json_body={"code": code, "msg": msg}, headers=headers)


def html_page(status: int = 200) -> Fault:
    """An HTML error page such as a CDN or gateway sends (a 502 Bad Gateway page, whatever the status)."""
    page = (
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
        "<center><h1>502 Bad Gateway</h1></center>\r\n"
        "<hr><center>CloudFront</center>\r\n</body>\r\n</html>\r\n"
    )
    return Fault(status=status, body=page, headers={"Content-Type": _HTML})


def truncated_json() -> Fault:
    """A 200 whose body is the start of a JSON array, cut in the middle of an object."""
    return Fault(body='[{"symbol":"BTC-251226-100000-C","sumOpenInterest":"4.01","sumOpenInterestUsd":"48')


def empty_list() -> Fault:
    return Fault(json_body=[])


def malformed_rows(*rows: dict[str, object]) -> Fault:
    """The good rows, followed by these."""
    return Fault(extra_rows=tuple(rows))


@dataclass(frozen=True)
class Request:
    """One request received; ``status`` is the status sent (``DROPPED``, 0, when no answer was sent)."""

    path: str
    params: dict[str, str]
    at: float  # time.monotonic() on arrival
    status: int = DROPPED


@dataclass
class _Injection:
    fault: Fault
    path: str
    underlying: str | None
    expiry: str | None
    remaining: int | None  # None: until clear_faults()

    def matches(self, path: str, params: dict[str, str]) -> bool:
        return (
            path == self.path
            and self.underlying in (None, params.get("underlyingAsset"))
            and self.expiry in (None, params.get("expiration"))
        )


@dataclass(frozen=True)
class _Reply:
    status: int
    body: bytes
    headers: dict[str, str]


# ---------------------------------------------------------------------------------------------- universe


@dataclass(frozen=True)
class _Spec:
    """How one underlying trades: strike ladder (low, high, step ranges), spot, contract sizes."""

    ladder: tuple[tuple[str, str, str], ...]
    spot: str
    max_contracts: int  # open interest of an at-the-money option, in contracts
    min_qty: str
    max_qty: str
    price_scale: int
    quantity_scale: int


_BTC_LADDER = (
    ("60000", "180000", "10000"),
    ("70000", "150000", "5000"),
    ("90000", "130000", "2500"),
    ("100000", "115000", "1000"),
)
_ETH_LADDER = (("1500", "6000", "500"), ("2000", "5000", "250"), ("2500", "4500", "100"))
_SPECS: dict[str, _Spec] = {
    "BTC": _Spec(_BTC_LADDER, "105000", 400, "0.01", "500", 0, 2),
    "ETH": _Spec(_ETH_LADDER, "3400", 3000, "0.01", "5000", 1, 2),
    "BNB": _Spec((("500", "1300", "50"), ("600", "1100", "25")), "900", 1500, "0.01", "5000", 1, 2),
    "SOL": _Spec((("100", "300", "5"), ("150", "200", "2.5")), "190", 20000, "0.1", "10000", 2, 1),
    "XRP": _Spec((("1", "4", "0.1"), ("2", "3", "0.05")), "2.4", 500000, "1", "100000", 4, 0),
    "DOGE": _Spec((("0.1", "0.4", "0.01"), ("0.15", "0.3", "0.005")), "0.22", 2000000, "1", "1000000", 5, 0),
}
_GENERIC = _Spec((("50", "150", "5"),), "100", 1000, "0.01", "1000", 2, 2)  # any other underlying


@dataclass(frozen=True)
class _Option:
    symbol: str
    underlying: str
    expiry: str
    strike: Decimal
    side: str  # "C" or "P"


def strike_text(strike: Decimal) -> str:
    """A strike as symbols write it: no exponent, no trailing zeros (``100000``, ``0.46``, ``152.5``)."""
    text = format(strike, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ladder(spec: _Spec) -> list[Decimal]:
    strikes: set[Decimal] = set()
    for low, high, step in spec.ladder:
        count = int((Decimal(high) - Decimal(low)) / Decimal(step))
        strikes.update(Decimal(low) + Decimal(step) * n for n in range(count + 1))
    return sorted(strikes)


def _strikes(underlying: str, expiry_index: int) -> list[Decimal]:
    """Near expiries list fewer wing strikes than far ones, as on the exchange."""
    ladder = _ladder(_SPECS.get(underlying, _GENERIC))
    trim = min(max(0, 3 - expiry_index), len(ladder) // 4)
    return ladder[trim : len(ladder) - trim]


def expiry_date(expiry: str) -> date:
    """``YYMMDD`` → the date; ValueError if it is not one."""
    if len(expiry) != 6 or not expiry.isdigit():
        raise ValueError(f"expiry {expiry!r} is not YYMMDD")
    return date(2000 + int(expiry[:2]), int(expiry[2:4]), int(expiry[4:]))


def expiry_ms(expiry: str) -> int:
    """``YYMMDD`` → ``expiryDate`` as exchangeInfo sends it: ms since the epoch at 08:00 UTC that day."""
    day = expiry_date(expiry)
    return int(datetime(day.year, day.month, day.day, _SETTLEMENT_HOUR, tzinfo=UTC).timestamp() * 1000)


def _symbol(underlying: str, expiry: str, strike: Decimal, side: str) -> str:
    return f"{underlying}-{expiry}-{strike_text(strike)}-{side}"


def _options(universe: dict[str, list[str]]) -> dict[tuple[str, str], list[_Option]]:
    options: dict[tuple[str, str], list[_Option]] = {}
    for underlying, expiries in universe.items():
        for index, expiry in enumerate(sorted(set(expiries), key=expiry_date)):
            options[(underlying, expiry)] = [
                _Option(_symbol(underlying, expiry, strike, side), underlying, expiry, strike, side)
                for strike in _strikes(underlying, index)
                for side in ("C", "P")
            ]
    return options


# ---------------------------------------------------------------------------------------------- values


def _hash(*parts: object) -> int:
    text = "|".join(str(part) for part in parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


def _spot(underlying: str, minute_ms: int) -> Decimal:
    """The index price at that minute: within ±1 % of the spec's spot, with many decimals."""
    jitter = Decimal(_hash("spot", underlying, minute_ms) % 200_001 - 100_000).scaleb(-7)
    return Decimal(_SPECS.get(underlying, _GENERIC).spot) * (1 + jitter)


def _base_cents(option: _Option) -> int:
    """The option's usual open interest in hundredths of a contract: large at the money, 0 for some."""
    if _hash("zero", option.symbol) % 9 == 0:
        return 0
    spec = _SPECS.get(option.underlying, _GENERIC)
    moneyness = float(option.strike / Decimal(spec.spot)) - 1
    cap = spec.max_contracts * 100 * math.exp(-((moneyness / 0.2) ** 2))
    return int(cap * (_hash("oi", option.symbol) % 1000) / 1000)


def _cents(option: _Option, minute_ms: int) -> int:
    """The usual value, swinging ±15 % over hours (positions open and close), with ±2.5 % noise a minute."""
    base = _base_cents(option)
    minute = minute_ms // _MINUTE_MS
    period = 180 + _hash("period", option.symbol) % 360
    swing = 0.15 * math.sin(2 * math.pi * (minute / period + _hash("phase", option.symbol) % 1000 / 1000))
    noise = (_hash("drift", option.symbol, minute_ms) % 201 - 100) / 4000
    return max(0, round(base * (1 + swing + noise)))


def _decimal_text(value: Decimal) -> str:
    return strike_text(value) if value else "0"


def _row(option: _Option, minute_ms: int, override: tuple[str, str] | None) -> dict[str, str]:
    if override is None:
        contracts = Decimal(_cents(option, minute_ms)).scaleb(-2)
        usd = (contracts * _spot(option.underlying, minute_ms)).quantize(Decimal("1E-10"), ROUND_HALF_EVEN)
        override = (_decimal_text(contracts), _decimal_text(usd))
    return {
        "symbol": option.symbol,
        "sumOpenInterest": override[0],
        "sumOpenInterestUsd": override[1],
        "timestamp": str(minute_ms),
    }


def current_minute_ms() -> int:
    """The current wall-clock minute, floored, in ms."""
    return int(time.time() // 60) * _MINUTE_MS


# A fixed minute for tests to serve: recent, as the collector believes only snapshots near its own clock (at
# most a day behind it), and far enough back that a test advancing it some minutes stays in the past.
RECENT_MINUTE_MS = current_minute_ms() - 60 * _MINUTE_MS


# ---------------------------------------------------------------------------------------------- exchangeInfo


def _option_symbol(option: _Option) -> dict[str, object]:
    spec = _SPECS.get(option.underlying, _GENERIC)
    tick = strike_text(Decimal(1).scaleb(-spec.price_scale))
    lot_size = {"minQty": spec.min_qty, "maxQty": spec.max_qty, "stepSize": spec.min_qty}
    return {
        "expiryDate": expiry_ms(option.expiry),
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": tick, "maxPrice": "1000000", "tickSize": tick},
            {"filterType": "LOT_SIZE", **lot_size},
        ],
        "symbol": option.symbol,
        "side": "CALL" if option.side == "C" else "PUT",
        "strikePrice": f"{option.strike:.8f}",
        "underlying": f"{option.underlying}USDT",
        "unit": 1,
        "makerFeeRate": "0.00020000",
        "takerFeeRate": "0.00020000",
        "minQty": spec.min_qty,
        "maxQty": spec.max_qty,
        "initialMargin": "0.15000000",
        "maintenanceMargin": "0.07500000",
        "minInitialMargin": "0.10000000",
        "minMaintenanceMargin": "0.05000000",
        "priceScale": spec.price_scale,
        "quantityScale": spec.quantity_scale,
        "quoteAsset": "USDT",
        "status": "TRADING",
    }


def _contract(underlying: str) -> dict[str, str]:
    return {
        "baseAsset": underlying,
        "quoteAsset": "USDT",
        "underlying": f"{underlying}USDT",
        "settleAsset": "USDT",
    }


_RATE_LIMITS = [
    {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 2400},
    {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
]


def _error(code: int, msg: str) -> dict[str, object]:
    return {"code": code, "msg": msg}


def _missing(name: str) -> tuple[int, object]:
    return 400, _error(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


# ---------------------------------------------------------------------------------------------- rate limits

_INTERVAL_SECONDS: dict[str, int] = {"SECOND": 1, "MINUTE": 60, "HOUR": 3600, "DAY": 86400}
_TOO_MANY = -1003  # the code of both the 429 and the 418 answers


@dataclass
class _Window:
    """One REQUEST_WEIGHT limit and the weight used in its current window (windows aligned to the epoch)."""

    interval: str  # SECOND, MINUTE, HOUR or DAY
    interval_num: int
    limit: int
    window_id: int = -1  # floor(time / seconds)
    used: int = 0
    refused: int = 0  # requests answered 429 for breaking this limit in this window

    @property
    def seconds(self) -> int:
        return _INTERVAL_SECONDS[self.interval] * self.interval_num

    @property
    def header(self) -> str:
        return f"X-MBX-USED-WEIGHT-{self.interval_num}{self.interval[0]}"

    def roll(self, now: float) -> None:
        """Start a new count when ``now`` is in a later window."""
        window_id = math.floor(now / self.seconds)
        if window_id != self.window_id:
            self.window_id, self.used, self.refused = window_id, 0, 0

    def breaks(self, weight: int) -> bool:
        return self.used + weight > self.limit

    def seconds_left(self, now: float) -> int:
        """Whole seconds until this window ends, rounded up (at least 1)."""
        return max(1, math.ceil((self.window_id + 1) * self.seconds - now))

    def too_many(self, ip: str) -> str:
        return (
            f"Too many requests; current limit of IP({ip}) is {self.limit} requests per {self.interval_num} "
            f"{self.interval}. Please use WebSocket Streams for live updates to avoid polling the API."
        )


def _window(limit: Mapping[str, Any]) -> _Window:
    """A REQUEST_WEIGHT entry of exchangeInfo's ``rateLimits`` → its window; ValueError if malformed."""
    interval, num, value = limit.get("interval"), limit.get("intervalNum"), limit.get("limit")
    if (
        interval not in _INTERVAL_SECONDS
        or not isinstance(num, int)
        or num < 1
        or not isinstance(value, int)
        or value < 0
    ):
        raise ValueError(f"not a rate limit: {dict(limit)!r}")
    return _Window(str(interval), num, value)


def _weight_windows(rate_limits: list[dict[str, Any]]) -> list[_Window]:
    """The windows of the REQUEST_WEIGHT limits (the others, ORDERS and the like, are only listed)."""
    return [_window(limit) for limit in rate_limits if limit.get("rateLimitType") == "REQUEST_WEIGHT"]


@dataclass(frozen=True)
class _Verdict:
    """The rate limiter's word on one request: serve it (status 200) or refuse it with 429 or 418."""

    headers: dict[str, str]  # the used-weight headers, plus Retry-After on a refusal
    status: int = 200
    msg: str = ""

    @property
    def refused(self) -> bool:
        return self.status != 200


class _Limiter:
    """Counts REQUEST_WEIGHT in every window and enforces the limits; callers hold the exchange's lock."""

    def __init__(self, windows: list[_Window], *, enforce: bool, ban_after_429s: int, ban_s: float) -> None:
        self.windows = windows
        self.enforce = enforce
        self.ban_after_429s = ban_after_429s
        self.ban_s = ban_s
        self.banned_until_ms: int | None = None
        self._ban_due = False  # the next request starts a ban

    def admit(self, weight: int, now: float, ip: str, *, exempt: bool) -> _Verdict:
        """Count one request of ``weight`` arriving at ``now``; ``exempt`` ones (faults) are never refused."""
        for window in self.windows:
            window.roll(now)
        if exempt or not self.enforce:
            return self._serve(weight)
        if self._banned(now) or self._ban_due:
            return self._ban(now, ip)
        broken = [window for window in self.windows if window.breaks(weight)]
        return self._too_many(broken, now, ip) if broken else self._serve(weight)

    def _banned(self, now: float) -> bool:
        if self.banned_until_ms is not None and now * 1000 >= self.banned_until_ms:
            self.banned_until_ms = None
        return self.banned_until_ms is not None

    def _count(self, weight: int) -> dict[str, str]:
        for window in self.windows:
            window.used += weight
        return {window.header: str(window.used) for window in self.windows}

    def _serve(self, weight: int) -> _Verdict:
        return _Verdict(self._count(weight))

    def _too_many(self, broken: list[_Window], now: float, ip: str) -> _Verdict:
        """429, counting weight 1; more than ``ban_after_429s`` in a window make the next request a ban."""
        for window in broken:
            window.refused += 1
        self._ban_due = any(window.refused > self.ban_after_429s for window in broken)
        longest = max(broken, key=lambda window: window.seconds_left(now))
        headers = {**self._count(1), "Retry-After": str(longest.seconds_left(now))}
        return _Verdict(headers, 429, longest.too_many(ip))

    def _ban(self, now: float, ip: str) -> _Verdict:
        """418, counting weight 1; the first one starts the ban, the others keep its end."""
        if self.banned_until_ms is None:
            self.banned_until_ms = math.ceil((now + self.ban_s) * 1000)
            self._ban_due = False
            for window in self.windows:
                window.refused = 0
        until = self.banned_until_ms
        retry_after = max(1, math.ceil(until / 1000 - now))
        msg = (
            f"Way too many requests; IP({ip}) banned until {until}. "
            "Please use WebSocket Streams for live updates to avoid bans."
        )
        return _Verdict({**self._count(1), "Retry-After": str(retry_after)}, 418, msg)


# ---------------------------------------------------------------------------------------------- server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # the default backlog of 5 drops connections when many clients start at once

    def __init__(self, exchange: FakeExchange, host: str = "127.0.0.1", port: int = 0) -> None:
        self.exchange = exchange
        super().__init__((host, port), _Handler)

    def handle_error(self, request: object, client_address: object) -> None:
        """Say nothing on stderr: clients that hang up are normal; anything else is kept for the tests."""
        error = sys.exc_info()[1]
        if error is not None and not isinstance(error, OSError):
            self.exchange.server_errors.append(error)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real exchange
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes: without this, Nagle and delayed ACKs add 40 ms to each.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.exchange._opened(self.connection)

    def finish(self) -> None:
        self.server.exchange._closed(self.connection)
        super().finish()

    def do_GET(self) -> None:
        self.server.exchange._serve(self)

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


def _send(
    handler: _Handler, reply: _Reply, drip_s: float = 0.0, stopping: threading.Event | None = None
) -> None:
    handler.send_response(reply.status)
    for name, value in reply.headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    if not drip_s:
        handler.wfile.write(reply.body)
        return
    for index in range(len(reply.body)):
        handler.wfile.write(reply.body[index : index + 1])
        handler.wfile.flush()
        if stopping is not None and stopping.wait(drip_s):
            return


def _drop(handler: _Handler) -> None:
    """Hang up without a word: closed here with linger 0, before the server sends a FIN, it is a reset."""
    handler.close_connection = True
    with suppress(OSError):
        handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.connection.close()  # really closes once the handler's rfile/wfile are closed


def _merge_headers(base: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``base`` with ``extra`` on top, header names compared case-insensitively."""
    lowered = {name.lower() for name in extra}
    return {**{name: value for name, value in base.items() if name.lower() not in lowered}, **extra}


class FakeExchange:
    """A Binance options market-data server on 127.0.0.1 (random port), for ``with`` or start()/stop()."""

    name = "fake-binance"

    def __init__(
        self,
        universe: dict[str, list[str]] | None = None,
        *,
        delay_s: float = 0.0,
        minute_ms: int | None = None,
        rate_limits: list[dict[str, Any]] | None = None,
        enforce: bool | None = None,
        ban_after_429s: int = 3,
        ban_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        """``rate_limits``: exchangeInfo's ``rateLimits`` to list, count and (``enforce``, by default when
        given) enforce; None lists the usual ones and only counts ``X-MBX-USED-WEIGHT-1M``. ``clock`` (seconds
        since the epoch) places requests in windows and bans."""
        if rate_limits is None and enforce:
            raise ValueError("enforce=True needs rate_limits")
        if ban_after_429s < 0 or ban_s <= 0:
            raise ValueError("ban_after_429s must be at least 0 and ban_s more than 0")
        self.set_universe(DEFAULT_UNIVERSE if universe is None else universe)
        self.delay_s = delay_s
        self.minute_ms = minute_ms
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self.server_errors: list[BaseException] = []  # exceptions raised while answering (bugs of the fake)
        self._in_flight = 0
        self._lock = threading.Lock()
        self._faults: list[_Injection] = []
        self._overrides: dict[str, tuple[str, str]] = {}
        self.clock = clock
        self._rate_limits = _RATE_LIMITS if rate_limits is None else [dict(limit) for limit in rate_limits]
        self._limiter = _Limiter(
            _weight_windows(self._rate_limits[:1] if rate_limits is None else self._rate_limits),
            enforce=rate_limits is not None if enforce is None else enforce,
            ban_after_429s=ban_after_429s,
            ban_s=ban_s,
        )
        self.host, self.port = host, port
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --------------------------------------------------------------------------------- life cycle

    def start(self) -> FakeExchange:
        if self._server is None:
            self._stopping = threading.Event()
            self._server = _Server(self, self.host, self.port)
            serve = self._server.serve_forever
            self._thread = threading.Thread(target=serve, args=(0.02,), name="fake-exchange", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening and hang up every open connection (a pooled keep-alive one would live on)."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        self._server = self._thread = None

    def __enter__(self) -> FakeExchange:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the fake exchange is not running: use it in a with block or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --------------------------------------------------------------------------------- data

    def set_universe(self, universe: dict[str, list[str]]) -> None:
        """List (and serve) exactly these underlyings and expiries from now on: expiries roll."""
        self.universe = {name: list(expiries) for name, expiries in universe.items()}
        self._options = _options(self.universe)
        self._by_symbol = {option.symbol: option for options in self._options.values() for option in options}

    def pairs(self) -> list[tuple[str, str]]:
        """Every (underlying, YYMMDD) served, sorted."""
        return sorted(self._options)

    def rows_for(self, underlying: str, expiry: str, minute_ms: int | None = None) -> list[dict[str, str]]:
        """Exactly the rows openInterest serves (without faults) for that pair at that minute (None: now)."""
        minute = self._minute() if minute_ms is None else minute_ms
        with self._lock:
            overrides = dict(self._overrides)
        options = self._options.get((underlying, expiry), [])
        return [_row(option, minute, overrides.get(option.symbol)) for option in options]

    def all_rows(self, minute_ms: int | None = None) -> list[dict[str, str]]:
        minute = self._minute() if minute_ms is None else minute_ms
        return [row for pair in self.pairs() for row in self.rows_for(*pair, minute)]

    def set_open_interest(self, symbol: str, oi: str, oi_usd: str) -> None:
        """Serve these values for ``symbol`` from now on, whatever the minute."""
        if symbol not in self._by_symbol:
            raise KeyError(f"{symbol} is not in the fake exchange's universe")
        with self._lock:
            self._overrides[symbol] = (oi, oi_usd)

    def _minute(self) -> int:
        minute = self.minute_ms
        return current_minute_ms() if minute is None else minute

    # --------------------------------------------------------------------------------- faults

    def inject(
        self,
        fault: Fault,
        *,
        underlying: str | None = None,
        expiry: str | None = None,
        path: str = OPEN_INTEREST,
        times: int | None = 1,
    ) -> None:
        """The next ``times`` matching requests get ``fault`` (None: every one until clear_faults())."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        with self._lock:
            self._faults.append(_Injection(fault, path, underlying, expiry, times))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str, params: dict[str, str]) -> Fault | None:
        with self._lock:
            for injection in self._faults:
                if injection.matches(path, params):
                    if injection.remaining is not None:
                        injection.remaining -= 1
                        if injection.remaining == 0:
                            self._faults.remove(injection)
                    return injection.fault
        return None

    # --------------------------------------------------------------------------------- requests

    def requests_to(self, path: str) -> list[Request]:
        return [request for request in list(self.requests) if request.path == path]

    def count_status(self, status: int) -> int:
        """How many requests were answered with ``status`` (``DROPPED``, 0: no answer, or still in flight)."""
        return sum(1 for request in list(self.requests) if request.status == status)

    # --------------------------------------------------------------------------------- rate limits

    @property
    def enforce(self) -> bool:
        """Whether rate limits are enforced (429, 418) rather than only counted."""
        return self._limiter.enforce

    @enforce.setter
    def enforce(self, value: bool) -> None:
        with self._lock:
            self._limiter.enforce = value

    @property
    def banned_until_ms(self) -> int | None:
        """The end of the current (or last, until the next request) ban, ms since the epoch; None if none."""
        return self._limiter.banned_until_ms

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    def _arrive(self, path: str, params: dict[str, str], ip: str, *, faulted: bool) -> tuple[int, _Verdict]:
        """Record the request and count its weight; its index in ``requests`` and the rate limiter's word."""
        now = self.clock()
        with self._lock:
            verdict = self._limiter.admit(WEIGHTS.get(path, 1), now, ip, exempt=faulted)
            self.requests.append(Request(path, params, time.monotonic()))
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            return len(self.requests) - 1, verdict

    def _leave(self, index: int, status: int) -> None:
        with self._lock:
            self.requests[index] = replace(self.requests[index], status=status)
            self._in_flight -= 1

    def _serve(self, handler: _Handler) -> None:
        url = urlsplit(handler.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        fault = self._take_fault(url.path, params)
        ip = str(handler.client_address[0])
        index, verdict = self._arrive(url.path, params, ip, faulted=fault is not None)
        reply: _Reply | None = None
        try:
            self._stopping.wait(self.delay_s + (fault.delay_s if fault else 0.0))
            dropped = (fault is not None and fault.drop_connection) or self._stopping.is_set()
            reply = None if dropped else self._reply(url.path, params, fault, verdict)
        finally:
            self._leave(index, DROPPED if reply is None else reply.status)
        if reply is None:
            _drop(handler)
        else:
            with suppress(OSError):  # a client that gave up on a dripped body hangs up
                _send(handler, reply, fault.drip_s if fault else 0.0, self._stopping)

    # --------------------------------------------------------------------------------- answers

    def _reply(self, path: str, params: dict[str, str], fault: Fault | None, verdict: _Verdict) -> _Reply:
        if verdict.refused:
            body = _dumps(_error(_TOO_MANY, verdict.msg))
            headers = {"Content-Type": _JSON, "Content-Length": str(len(body)), **verdict.headers}
            return _Reply(verdict.status, body, headers)
        status, value = self._answer(path, params)
        content_type = _JSON
        if fault is not None and fault.body is not None:
            status, body = fault.status, fault.body.encode()
            content_type = _HTML if "<html" in fault.body[:512].lower() else _JSON
        elif fault is not None and fault.json_body is not None:
            status, body = fault.status, _dumps(fault.json_body)
        else:
            if fault is not None and fault.extra_rows and isinstance(value, list):
                value = [*value, *fault.extra_rows]
            if fault is not None and fault.status != 200:
                status = fault.status
            body = _dumps(value)
        headers = {"Content-Type": content_type, "Content-Length": str(len(body)), **verdict.headers}
        if fault is not None:
            headers = _merge_headers(headers, fault.headers)
        return _Reply(status, body, headers)

    def _answer(self, path: str, params: dict[str, str]) -> tuple[int, object]:
        if path == OPEN_INTEREST:
            return self._open_interest(params)
        if path == EXCHANGE_INFO:
            return 200, self._exchange_info()
        if path == TIME:
            return 200, {"serverTime": _now_ms()}
        if path == PING:
            return 200, {}
        return 404, _error(-1000, "Not found")

    def _open_interest(self, params: dict[str, str]) -> tuple[int, object]:
        underlying, expiry = params.get("underlyingAsset", ""), params.get("expiration", "")
        if not underlying:
            return _missing("underlyingAsset")
        if not expiry or len(expiry) != 6 or not expiry.isdigit():
            return _missing("expiration")
        if underlying not in self.universe:
            return 400, _error(-1128, "Invalid underlying.")
        return 200, self.rows_for(underlying, expiry)

    def _exchange_info(self) -> dict[str, object]:
        return {
            "timezone": "UTC",
            "serverTime": _now_ms(),
            "optionContracts": [_contract(underlying) for underlying in self.universe],
            "optionAssets": [{"name": "USDT"}],
            "optionSymbols": [_option_symbol(option) for option in _flatten(self._options.values())],
            "rateLimits": [dict(limit) for limit in self._rate_limits],
        }


def _flatten(groups: Iterable[list[_Option]]) -> list[_Option]:
    return [option for group in groups for option in group]


def _dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def _now_ms() -> int:
    return int(time.time() * 1000)


if __name__ == "__main__":
    from tests.fake_http import run_cli

    sys.exit(run_cli(FakeExchange))
