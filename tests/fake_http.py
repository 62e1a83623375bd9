"""What every fake venue shares: a real HTTP server on 127.0.0.1, a request log, faults, minutes and chains.

A venue fake subclasses ``FakeVenue[Option]`` and writes its hooks: ``_chains`` (its options per scope, from a
universe), ``_row`` and ``_listing`` (one option's row in the open-interest answer and in the listing),
``_answer(call)`` (the normal answer to one request, an ``Answer``) and, if it limits requests,
``_admit(call)`` (an ``Admission``: headers to send and, over a limit, the refusal to send instead).
Everything else lives here once:

- life cycle: ``with Fake() as fake:`` or ``start()``/``stop()``; ``base_url``; ``stop()`` hangs up pooled
  keep-alive connections too;
- data: ``universe`` and ``set_universe``; ``scopes()`` (what one open-interest call asks for);
  ``rows_for(scope, minute_ms=None)``, exactly the rows that call serves, with the exact values sent;
  ``instruments_for(scope)``, exactly the listing's rows;
- the log: ``requests`` (``Request(path, params, at, status)``), ``requests_to(path)``, ``count_status``,
  ``max_in_flight`` and ``server_errors`` (exceptions raised while answering: bugs of the fake);
- faults (``Fault`` from tests/fake_exchange.py: status, raw body, JSON body, headers, delay, drip, dropped
  connection, extra rows), injected with ``inject(fault, path=..., times=1, **query_params)``: a fault
  matches a request to that path whose query has every one of those parameters with that value. Injected
  faults win over rate limits (the request is still counted);
- ``delay_s``: added before every answer (benchmarks set 0.1);
- minutes: values are deterministic per (instrument, minute); ``minute_ms`` pins the minute, None follows the
  wall clock;
- JSON text written here (``json_text``), so ``Decimal`` values go out as JSON numbers with every digit;
- option chains: a default universe of expiries computed from today (the next three Fridays and the last
  Fridays of the next two months, 08:00 UTC) and strike ladders around a nominal spot;
- ``run_cli``: ``python -m tests.fake_<venue> --port 8001`` prints the base URL and serves until Ctrl-C.

The server, handler, reply, send and drop mechanics are tests/fake_exchange.py's, imported, not copied.
Standard library only.
"""

from __future__ import annotations

import argparse
import json
import math
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from http.server import ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Self, TypedDict, TypeVar, cast
from urllib.parse import parse_qsl, urlsplit

from tests.fake_exchange import (
    DROPPED,
    RECENT_MINUTE_MS,
    Fault,
    Request,
    _drop,
    _Handler,
    _hash,
    _merge_headers,
    _Reply,
    _send,
    _Server,
    current_minute_ms,
    strike_text,
)

if TYPE_CHECKING:
    from tests.fake_exchange import FakeExchange

__all__ = [
    "ANY_PATH",
    "DROPPED",
    "HTML",
    "JSON",
    "MINUTE_MS",
    "PLAIN",
    "RECENT_MINUTE_MS",
    "Admission",
    "Answer",
    "Call",
    "FakeVenue",
    "Fault",
    "Greeks",
    "Request",
    "Row",
    "SlidingWindow",
    "Strike",
    "Universe",
    "VenueOptions",
    "current_minute_ms",
    "ddmmmyy",
    "default_expiries",
    "expiry_ms",
    "fraction",
    "greeks",
    "hash_of",
    "json_text",
    "on_tick",
    "open_amount",
    "option_chain",
    "plain",
    "price_near",
    "run_cli",
    "smile",
    "strike_text",
    "years_left",
    "yymmdd",
]

JSON = "application/json"
PLAIN = "text/plain; charset=utf-8"
HTML = "text/html; charset=utf-8"
ANY_PATH = "*"  # inject(..., path=ANY_PATH): a fault for whatever path the request asks for
MINUTE_MS = 60_000
SETTLEMENT_HOUR = 8  # every venue here settles options at 08:00 UTC

Universe = Mapping[str, Sequence[date]]  # scope or base (as the venue names it) → expiry dates
Row = dict[str, Any]  # one row of an answer: JSON values (Decimal for exact numbers)
Option = TypeVar("Option")  # how a venue describes one listed option


# ---------------------------------------------------------------------------------------------- JSON text


def json_text(value: object) -> str:
    """Compact JSON, with every ``Decimal`` written as a JSON number holding exactly its digits (``json``
    would refuse a Decimal, and a float keeps only 17 significant digits)."""
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"JSON has no {value}")
        return format(value, "f")
    if value is None or isinstance(value, bool | int | float | str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        return (
            "{" + ",".join(f"{json.dumps(str(key))}:{json_text(item)}" for key, item in value.items()) + "}"
        )
    if isinstance(value, list | tuple):
        return "[" + ",".join(json_text(item) for item in value) + "]"
    raise TypeError(f"not JSON: {type(value).__name__}")


def _content_type(body: str) -> str:
    """What a raw fault body is sent as: an HTML page, JSON (or what starts like it), else plain text."""
    start = body[:512].lstrip().lower()
    if "<html" in start or start.startswith("<!doctype"):
        return HTML
    return JSON if start[:1] in ("{", "[") else PLAIN


# ---------------------------------------------------------------------------------------------- hooks' values


@dataclass(frozen=True, slots=True)
class Call:
    """One request as the venue hooks see it."""

    path: str
    params: dict[str, str]
    seq: int  # 1 for the first request this fake received
    now: float  # the fake's clock (seconds since the epoch) on arrival


@dataclass(frozen=True, slots=True)
class Answer:
    """A normal answer: ``value`` as JSON (``Decimal`` exact), or ``text`` sent as is with ``content_type``.

    ``rows`` is the list inside ``value`` that a fault's ``extra_rows`` are appended to (None: no rows)."""

    status: int
    value: object = None
    headers: Mapping[str, str] = field(default_factory=dict)
    rows: list[Any] | None = None
    text: str | None = None
    content_type: str = JSON


@dataclass(frozen=True, slots=True)
class Admission:
    """The rate limiter's word on one request: headers for its answer, and the answer to send instead when
    it is refused."""

    headers: Mapping[str, str] = field(default_factory=dict)
    refusal: Answer | None = None


class SlidingWindow:
    """At most ``limit`` admitted requests in any ``seconds`` (per key); refused ones are not counted."""

    def __init__(self, limit: int, seconds: float) -> None:
        if limit < 0 or seconds <= 0:
            raise ValueError("a window needs a limit of at least 0 and more than 0 seconds")
        self.limit = limit
        self.seconds = seconds
        self._arrivals: dict[Hashable, deque[float]] = {}

    def admit(self, now: float, key: Hashable = None) -> bool:
        arrivals = self._arrivals.setdefault(key, deque())
        while arrivals and arrivals[0] <= now - self.seconds:
            arrivals.popleft()
        if len(arrivals) >= self.limit:
            return False
        arrivals.append(now)
        return True

    def reset(self) -> None:
        self._arrivals.clear()


# ---------------------------------------------------------------------------------------------- faults


@dataclass
class _Injection:
    fault: Fault
    path: str
    params: dict[str, str]
    remaining: int | None  # None: until clear_faults()

    def matches(self, path: str, params: Mapping[str, str]) -> bool:
        return self.path in (ANY_PATH, path) and all(params.get(k) == v for k, v in self.params.items())


# ---------------------------------------------------------------------------------------------- server


class _VenueServer(_Server):
    """fake_exchange's server (its handler calls back ``_serve``, ``_opened``, ``_closed`` and fills
    ``server_errors``), bound to any host and port."""

    def __init__(self, venue: FakeVenue[Any], host: str, port: int) -> None:
        # The handler and handle_error only use the four members named above, which FakeVenue has too.
        self.exchange = cast("FakeExchange", venue)
        ThreadingHTTPServer.__init__(self, (host, port), _Handler)


class VenueOptions(TypedDict, total=False):
    """What every fake takes besides its universe and limits (see ``FakeVenue.__init__``)."""

    delay_s: float
    minute_ms: int | None
    host: str
    port: int
    clock: Callable[[], float]


class FakeVenue(Generic[Option]):
    """The shared part of a fake venue; see the module docstring. A subclass sets ``name`` and
    ``default_path`` and writes ``_chains`` (its options per scope), ``_row`` and ``_listing`` (an option's
    row in the open-interest answer and in the listing), ``_answer`` and, to limit requests, ``_admit``."""

    name = "fake-venue"
    default_path = "/"  # where inject() puts a fault when no path is given: the venue's open-interest call

    def __init__(
        self,
        universe: Universe,
        *,
        delay_s: float = 0.0,
        minute_ms: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``universe``: scope or name prefix → expiry dates, as the venue's ``_chains`` reads it; ``clock``
        (seconds since the epoch) is what rate limits and bans count with; ``port`` 0 picks a free one."""
        self.delay_s = delay_s
        self.minute_ms = minute_ms
        self.host = host
        self.port = port
        self.clock = clock
        self.requests: list[Request] = []
        self.max_in_flight = 0
        self.server_errors: list[BaseException] = []
        self._in_flight = 0
        self._lock = threading.Lock()
        self._faults: list[_Injection] = []
        self._memo: dict[tuple[str, int], list[Row]] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _VenueServer | None = None
        self._thread: threading.Thread | None = None
        self.set_universe(universe)

    # --------------------------------------------------------------------------------- life cycle

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping = threading.Event()
        server = _VenueServer(self, self.host, self.port)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, args=(0.02,), name=self.name, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening, end drips and delays, and hang up every open connection."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None or thread is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        thread.join()
        with self._lock:
            open_now = list(self._connections)
        for connection in open_now:
            with suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not running: use it in a with block or call start()")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _opened(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.add(connection)

    def _closed(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)

    # --------------------------------------------------------------------------------- minutes

    def minute(self) -> int:
        """The minute served now: ``minute_ms`` when pinned, else the current wall-clock minute."""
        pinned = self.minute_ms
        return current_minute_ms() if pinned is None else pinned

    def _at(self, minute_ms: int | None) -> int:
        return self.minute() if minute_ms is None else minute_ms

    # --------------------------------------------------------------------------------- data

    def set_universe(self, universe: Universe) -> None:
        """List and serve exactly these expiries from now on (expiries roll)."""
        self.universe = {name: list(expiries) for name, expiries in universe.items()}
        chains = self._chains(self.universe)
        with self._lock:
            self._options, self._memo = chains, {}

    def scopes(self) -> list[str]:
        """What one open-interest call asks for (currency, family, base coin), every one served, sorted."""
        return sorted(self._options)

    def rows_for(self, scope: str, minute_ms: int | None = None) -> list[Row]:
        """Exactly the rows the open-interest call serves (without faults) for ``scope`` at that minute (None:
        the minute served now), with the exact values sent. Built once per (scope, minute), as the values are
        fixed by them, and handed out as copies so that nobody's edits leak into the next answer."""
        key = (scope, self._at(minute_ms))
        with self._lock:
            rows, options = self._memo.get(key), self._options.get(scope, [])
        if rows is None:
            rows = [self._row(option, key[1]) for option in options]
            with self._lock:
                if len(self._memo) >= 64:
                    self._memo.clear()
                self._memo[key] = rows
        return [dict(row) for row in rows]

    def instruments_for(self, scope: str) -> list[Row]:
        """Exactly the rows the listing serves for ``scope`` (all pages together, in page order)."""
        return [self._listing(option) for option in self._options.get(scope, [])]

    # --------------------------------------------------------------------------------- faults

    def inject(self, fault: Fault, *, path: str | None = None, times: int | None = 1, **params: str) -> None:
        """The next ``times`` requests to ``path`` (default: the open-interest call; ``ANY_PATH``: any) whose
        query holds every ``params`` value get ``fault``; ``times=None``: every one until clear_faults()."""
        if times is not None and times < 1:
            raise ValueError("times must be at least 1, or None for every request")
        injection = _Injection(fault, self.default_path if path is None else path, dict(params), times)
        with self._lock:
            self._faults.append(injection)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _take_fault(self, path: str, params: Mapping[str, str]) -> Fault | None:
        """The first matching fault, used up once (callers hold the lock)."""
        for injection in self._faults:
            if injection.matches(path, params):
                if injection.remaining is not None:
                    injection.remaining -= 1
                    if injection.remaining == 0:
                        self._faults.remove(injection)
                return injection.fault
        return None

    # --------------------------------------------------------------------------------- the log

    def requests_to(self, path: str) -> list[Request]:
        return [request for request in list(self.requests) if request.path == path]

    def count_status(self, status: int) -> int:
        """How many requests were answered with ``status`` (``DROPPED``, 0: no answer, or still in flight)."""
        return sum(1 for request in list(self.requests) if request.status == status)

    # --------------------------------------------------------------------------------- hooks

    def _chains(self, universe: Universe) -> dict[str, list[Option]]:
        """The options of a universe, by scope, in the order the venue serves them."""
        raise NotImplementedError

    def _row(self, option: Option, minute: int) -> Row:
        """The option's row in the open-interest answer at that minute."""
        raise NotImplementedError

    def _listing(self, option: Option) -> Row:
        """The option's row in the listing."""
        raise NotImplementedError

    def _admit(self, call: Call) -> Admission:
        """Count one request against the venue's limits (called under the lock, on arrival)."""
        return Admission()

    def _answer(self, call: Call) -> Answer:
        """The normal answer to one request."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------- serving

    def _serve(self, handler: _Handler) -> None:
        url = urlsplit(handler.path)
        params = dict(parse_qsl(url.query, keep_blank_values=True))
        with self._lock:
            call = Call(url.path, params, len(self.requests) + 1, self.clock())
            fault = self._take_fault(call.path, params)
            admission = self._admit(call)
            self.requests.append(Request(call.path, params, time.monotonic()))
            index = len(self.requests) - 1
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
        reply: _Reply | None = None
        try:
            self._stopping.wait(self.delay_s + (fault.delay_s if fault else 0.0))
            dropped = (fault is not None and fault.drop_connection) or self._stopping.is_set()
            reply = None if dropped else self._reply(call, fault, admission)
        finally:
            with self._lock:
                status = DROPPED if reply is None else reply.status
                self.requests[index] = replace(self.requests[index], status=status)
                self._in_flight -= 1
        if reply is None:
            _drop(handler)
            return
        with suppress(OSError):  # a client that gave up on a dripped body hangs up
            _send(handler, reply, fault.drip_s if fault else 0.0, self._stopping)

    def _reply(self, call: Call, fault: Fault | None, admission: Admission) -> _Reply:
        """The fault's body, else the refusal (unless a fault came), else the normal answer with the fault's
        status and extra rows; the admission's headers, then the fault's, on top."""
        headers: Mapping[str, str] = {}
        if fault is not None and fault.body is not None:
            status, body, content_type = fault.status, fault.body, _content_type(fault.body)
        elif fault is not None and fault.json_body is not None:
            status, body, content_type = fault.status, json_text(fault.json_body), JSON
        else:
            answer = admission.refusal if fault is None else None
            if answer is None:
                answer = self._answer(call)
            if fault is not None and fault.extra_rows and answer.rows is not None:
                answer.rows.extend(fault.extra_rows)
            status = fault.status if fault is not None and fault.status != 200 else answer.status
            body = answer.text if answer.text is not None else json_text(answer.value)
            content_type, headers = answer.content_type, answer.headers
        data = body.encode()
        sent = {
            "Content-Type": content_type,
            "Content-Length": str(len(data)),
            **admission.headers,
            **headers,
        }
        if fault is not None:
            sent = _merge_headers(sent, fault.headers)
        return _Reply(status, data, sent)


# ---------------------------------------------------------------------------------------------- chains

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_FRIDAY = 4


def expiry_ms(day: date) -> int:
    """The settlement instant of an expiry date: 08:00 UTC, ms since the epoch."""
    return int(datetime(day.year, day.month, day.day, SETTLEMENT_HOUR, tzinfo=UTC).timestamp() * 1000)


def ddmmmyy(day: date) -> str:
    """Deribit's and Bybit's date: day in 1 or 2 digits, English month upper case, 2-digit year (5AUG23)."""
    return f"{day.day}{_MONTHS[day.month - 1]}{day.year % 100:02d}"


def yymmdd(day: date) -> str:
    """OKX's (and Binance's) date: 250627."""
    return day.strftime("%y%m%d")


def _last_friday(year: int, month: int) -> date:
    following = date(year + month // 12, month % 12 + 1, 1)
    last = following - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - _FRIDAY) % 7)


def default_expiries(now: datetime | None = None) -> list[date]:
    """The next three Fridays whose 08:00 UTC settlement is still ahead, and the last Fridays of the next
    two months: so the fixtures never go stale."""
    moment = datetime.now(UTC) if now is None else now
    day = moment.date()
    friday = day + timedelta(days=(_FRIDAY - day.weekday()) % 7)
    if expiry_ms(friday) <= moment.timestamp() * 1000:
        friday += timedelta(days=7)
    weeklies = [friday + timedelta(days=7 * n) for n in range(3)]
    months = [(day.year + (day.month - 1 + n) // 12, (day.month - 1 + n) % 12 + 1) for n in (1, 2)]
    return sorted({*weeklies, *(_last_friday(year, month) for year, month in months)})


@dataclass(frozen=True, slots=True)
class Strike:
    """One option of a chain before the venue names it."""

    expiry: date
    expiry_index: int  # 0 for the nearest expiry of the chain
    strike: Decimal
    side: str  # "C" or "P"


def _ladder(nominal: Decimal, step: Decimal, wing: int) -> list[Decimal]:
    """``wing`` strikes each side of the money: the nearer half ``step`` apart, the outer half twice that."""
    money = (nominal / step).to_integral_value() * step
    inner = math.ceil(wing / 2)
    offsets = [step * n for n in range(inner + 1)]
    offsets += [step * inner + 2 * step * n for n in range(1, wing - inner + 1)]
    strikes = {money + offset for offset in offsets} | {money - offset for offset in offsets}
    return sorted(strike.normalize() for strike in strikes if strike > 0)


def option_chain(expiries: Sequence[date], nominal: Decimal, step: Decimal, wing: int) -> list[Strike]:
    """Calls and puts for every expiry, sorted; later expiries list two more strikes each side than the one
    before (near ones are trimmed of wings, as on the venues)."""
    chain: list[Strike] = []
    for index, expiry in enumerate(sorted(set(expiries))):
        for strike in _ladder(nominal, step, wing + 2 * index):
            chain += [Strike(expiry, index, strike, side) for side in ("C", "P")]
    return chain


# ---------------------------------------------------------------------------------------------- values

hash_of = _hash  # a deterministic 64-bit integer fixed by its parts (fake_exchange's)


def on_tick(value: Decimal, tick: Decimal, rounding: str = ROUND_HALF_EVEN) -> Decimal:
    """``value`` rounded to a multiple of ``tick`` (which need not be a power of ten: 5, 0.0005)."""
    return ((value / tick).to_integral_value(rounding) * tick).normalize() + 0 * tick


def plain(value: Decimal) -> str:
    """A decimal as venues write number strings: no exponent, no trailing zeros, ``0`` for zero."""
    return strike_text(value) if value else "0"


def fraction(*parts: object) -> Decimal:
    """A deterministic number in [0, 1) with 18 decimals, fixed by ``parts``."""
    return Decimal(_hash(*parts) % 10**18).scaleb(-18)


def price_near(nominal: Decimal, name: str, minute_ms: int, places: int, spread: str = "0.02") -> Decimal:
    """A price within ±``spread``/2 of ``nominal`` that moves every minute, with ``places`` decimals."""
    jitter = (fraction("price", name, minute_ms) - Decimal("0.5")) * Decimal(spread)
    return (nominal * (1 + jitter)).quantize(Decimal(1).scaleb(-places))


def open_amount(symbol: str, strike: Decimal, nominal: Decimal, peak: int, minute_ms: int) -> int:
    """An option's open interest in the venue's smallest unit: up to ``peak`` at the money, fading away from
    it, nothing at all for about one option in nine; it swings ±15 % over some hours and ±2.5 % a minute."""
    if _hash("empty", symbol) % 9 == 0:
        return 0
    distance = float(strike / nominal) - 1
    usual = peak * math.exp(-((distance / 0.18) ** 2)) * (0.1 + 0.9 * float(fraction("size", symbol)))
    minute = minute_ms // MINUTE_MS
    hours = 180 + _hash("hours", symbol) % 360
    swing = 0.15 * math.sin(2 * math.pi * (minute / hours + float(fraction("phase", symbol))))
    noise = (_hash("noise", symbol, minute) % 201 - 100) / 4000
    return max(0, round(usual * (1 + swing + noise)))


@dataclass(frozen=True, slots=True)
class Greeks:
    """Black-Scholes at zero rates, so that fake mark prices and greeks look like the real ones."""

    value: float  # in the quote currency (USD)
    delta: float
    gamma: float
    vega: float  # per volatility point
    theta: float  # per day


def greeks(spot: float, strike: float, side: str, years: float, iv: float) -> Greeks:
    spread = iv * math.sqrt(max(years, 1e-6))
    d1 = (math.log(spot / strike) + spread * spread / 2) / spread
    cdf = 0.5 * (1 + math.erf(d1 / math.sqrt(2)))
    cdf2 = 0.5 * (1 + math.erf((d1 - spread) / math.sqrt(2)))
    density = math.exp(-d1 * d1 / 2) / math.sqrt(2 * math.pi)
    call = spot * cdf - strike * cdf2
    value, delta = (call, cdf) if side == "C" else (call - spot + strike, cdf - 1)
    root = math.sqrt(max(years, 1e-6))
    return Greeks(
        value=max(value, 0.0),
        delta=delta,
        gamma=density / (spot * spread),
        vega=spot * density * root / 100,
        theta=-spot * density * iv / (2 * root) / 365,
    )


def years_left(expiry: date, minute_ms: int) -> float:
    """Time to the 08:00 UTC settlement, in years (at least a minute)."""
    return max(expiry_ms(expiry) - minute_ms, MINUTE_MS) / (365 * 86_400_000)


def smile(base_iv: float, strike: Decimal, nominal: Decimal, *parts: object) -> float:
    """An implied volatility: higher away from the money, a little noise fixed by ``parts``."""
    distance = float(strike / nominal) - 1
    return base_iv + 0.8 * distance * distance + 0.04 * float(fraction("iv", *parts))


# ---------------------------------------------------------------------------------------------- by hand


def run_cli(make: Callable[..., FakeVenue[Any] | FakeExchange], argv: Sequence[str] | None = None) -> int:
    """``python -m tests.fake_<venue> [--port N] [--delay-s S] [--minute-ms MS]``: print the base URL on
    stdout and serve until Ctrl-C."""
    parser = argparse.ArgumentParser(description="Serve a fake venue on 127.0.0.1 until Ctrl-C.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (the default)")
    parser.add_argument("--delay-s", type=float, default=0.0, help="added before every answer")
    parser.add_argument("--minute-ms", type=int, default=None, help="pin the minute served (default: now)")
    args = parser.parse_args(argv)
    fake = make(host=args.host, port=args.port, delay_s=args.delay_s, minute_ms=args.minute_ms)
    with fake:
        print(fake.base_url, flush=True)
        print(f"{fake.name} serving; Ctrl-C stops it", file=sys.stderr, flush=True)
        with suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0
