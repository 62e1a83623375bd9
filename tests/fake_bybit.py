"""A fake Bybit: the public v5 option market data of /work/shared/venues.md §3.

Serves ``market/tickers`` (the open-interest call, one per base coin: BTC, ETH, SOL) and the paginated
``market/instruments-info`` (the listing) with Bybit's envelope ``{"retCode":0,"retMsg":"OK","result":{...},
"retExtInfo":{},"time":<int ms>}``. Row values are strings; rows carry no timestamp, the envelope's ``time``
(a few hundred ms into the minute served) is the only one. Names: USDC-settled ``BTC-27JUN25-100000-C`` (day
in 1 or 2 digits) and, for about a third of them, a USDT-settled twin ``BTC-27JUN25-100000-C-USDT`` with the
same base, expiry, strike and side and its own open interest; both come back in the same call.

Choices where venues.md says **unconfirmed** (or says nothing):
- ``tickers`` without ``baseCoin`` (and ``symbol``), or with a coin not served, or ``category`` other than
  ``option``, or an unknown ``symbol``: HTTP 200, ``retCode 10001 "params error"``. ``instruments-info`` takes
  ``baseCoin`` BTC by default and answers an empty list for a coin not served (so probing works); a ``limit``
  outside 1-1000 or a ``cursor`` it did not hand out is 10001. ``expDate`` (``25DEC22``) narrows both.
- Over ``ip_limit`` requests in any ``ip_window_s`` (5 s; off by default): HTTP 403 with the plain-text body
  ``access too frequent``, and every request for ``ban_s`` (600 s) after it likewise; no ``X-Bapi-*`` headers.
- ``X-Bapi-Limit`` (``bapi_limit``, 50), ``X-Bapi-Limit-Status`` (what is left of it this second) and
  ``X-Bapi-Limit-Reset-Timestamp`` (the next second, ms) on every other answer; never enforced: 10006 "Too
  many visits!" only by ``too_many_visits()``.
- An unknown path is HTTP 404 with a plain-text body.
- ``quoteCoin`` USD for USDC-settled options, USDT for USDT-settled; ``displayName``
  ``BTCUSDT-27MAR26-70000-P`` for USDT-settled, empty for USDC-settled; ``launchTime`` 08:00 UTC some weeks
  before delivery; the ``nextPageCursor`` is opaque.
- Decimal strikes would be written with ``.``; the default universe has none.
"""

from __future__ import annotations

import base64
import binascii
import math
import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Unpack

from tests.fake_http import (
    PLAIN,
    Admission,
    Answer,
    Call,
    FakeVenue,
    Fault,
    Row,
    SlidingWindow,
    Strike,
    Universe,
    VenueOptions,
    ddmmmyy,
    default_expiries,
    expiry_ms,
    fraction,
    greeks,
    hash_of,
    on_tick,
    open_amount,
    option_chain,
    plain,
    price_near,
    run_cli,
    smile,
    strike_text,
    years_left,
)

TICKERS = "/v5/market/tickers"
INSTRUMENTS_INFO = "/v5/market/instruments-info"
DEFAULT_PAGE = 500
MAX_PAGE = 1000

PARAMS_ERROR = 10001
TOO_MANY_VISITS = 10006
ACCESS_TOO_FREQUENT = "access too frequent"


# ---------------------------------------------------------------------------------------------- faults


def bybit_error(
    ret_code: int, ret_msg: str, status: int = 200, headers: dict[str, str] | None = None
) -> Fault:
    """Bybit's error envelope (HTTP 200 unless told), e.g. ``bybit_error(10001, "params error")``."""
    envelope = {"retCode": ret_code, "retMsg": ret_msg, "result": {}, "retExtInfo": {}, "time": _now_ms()}
    return Fault(status=status, json_body=envelope, headers=headers or {})


def too_many_visits() -> Fault:
    """The per-UID limit: retCode 10006 on HTTP 200, with nothing left of ``X-Bapi-Limit-Status``."""
    return bybit_error(TOO_MANY_VISITS, "Too many visits!", headers={"X-Bapi-Limit-Status": "0"})


def access_too_frequent() -> Fault:
    """The IP ban's answer, once: HTTP 403 with a plain-text body."""
    return Fault(status=403, body=ACCESS_TOO_FREQUENT, headers={"Content-Type": PLAIN})


def _now_ms() -> int:
    return int(time.time() * 1000)


# ---------------------------------------------------------------------------------------------- universe


@dataclass(frozen=True, slots=True)
class _Spec:
    nominal: Decimal
    step: Decimal
    wing: int
    peak: int  # open interest at the money, in hundredths of a coin
    tick: Decimal  # price tick, USD
    base_iv: float


_SPECS: dict[str, _Spec] = {
    "BTC": _Spec(Decimal(97000), Decimal(1000), 8, 40_000, Decimal(5), 0.5),
    "ETH": _Spec(Decimal(3400), Decimal(50), 8, 500_000, Decimal("0.1"), 0.65),
    "SOL": _Spec(Decimal(190), Decimal(5), 5, 2_000_000, Decimal("0.01"), 0.8),
}
_GENERIC = _Spec(Decimal(100), Decimal(5), 5, 100_000, Decimal("0.01"), 0.7)


def default_universe(now: datetime | None = None) -> dict[str, list[date]]:
    """BTC, ETH and SOL on the default expiries (from today)."""
    expiries = default_expiries(now)
    return {coin: list(expiries) for coin in _SPECS}


@dataclass(frozen=True, slots=True)
class _Option:
    symbol: str
    coin: str
    settle: str  # USDC or USDT
    spec: _Spec
    listed: Strike


def _has_usdt_twin(symbol: str) -> bool:
    return hash_of("usdt", symbol) % 3 == 0


def _options(universe: Universe) -> dict[str, list[_Option]]:
    by_coin: dict[str, list[_Option]] = {}
    for coin, expiries in sorted(universe.items()):
        spec = _SPECS.get(coin, _GENERIC)
        options = by_coin.setdefault(coin, [])
        for listed in option_chain(expiries, spec.nominal, spec.step, spec.wing):
            symbol = f"{coin}-{ddmmmyy(listed.expiry)}-{strike_text(listed.strike)}-{listed.side}"
            options.append(_Option(symbol, coin, "USDC", spec, listed))
            if _has_usdt_twin(symbol):
                options.append(_Option(f"{symbol}-USDT", coin, "USDT", spec, listed))
    return by_coin


# ---------------------------------------------------------------------------------------------- values


def _fixed(value: float, places: int) -> str:
    return plain(Decimal(repr(value)).quantize(Decimal(1).scaleb(-places)))


def _ticker(option: _Option, minute: int) -> Row:
    """One row of tickers: values fixed by (symbol, minute)."""
    spec, listed, symbol = option.spec, option.listed, option.symbol
    index = price_near(spec.nominal, option.coin, minute, 2)
    years = years_left(listed.expiry, minute)
    underlying = (index * (1 + Decimal(repr(round(years * 0.03, 9))))).quantize(Decimal("0.01"))
    iv = smile(spec.base_iv, listed.strike, spec.nominal, symbol, minute)
    model = greeks(float(underlying), float(listed.strike), listed.side, years, iv)
    mark = max(Decimal(repr(model.value)).quantize(Decimal("1E-8")), spec.tick)
    quoted = fraction("quoted", symbol, minute) >= Decimal("0.2")
    bid = on_tick(mark * Decimal("0.97"), spec.tick) if quoted else Decimal(0)
    ask = on_tick(mark * Decimal("1.03"), spec.tick) + spec.tick
    traded = fraction("traded", symbol, minute) >= Decimal("0.3")
    last = on_tick(mark * (Decimal("0.95") + fraction("px", symbol, minute) / 10), spec.tick)
    volume = Decimal(hash_of("volume", symbol, minute) % 2000).scaleb(-2) if traded else Decimal(0)
    total = Decimal(hash_of("total", symbol) % 500_000).scaleb(-2) + volume
    hundredths = open_amount(symbol, listed.strike, spec.nominal, spec.peak, minute)
    change = (fraction("change", symbol, minute) - Decimal("0.5")).quantize(Decimal("0.0001"))
    return {
        "symbol": symbol,
        "openInterest": plain(Decimal(hundredths).scaleb(-2)),
        "markPrice": plain(mark),
        "indexPrice": plain(index),
        "underlyingPrice": plain(underlying),
        "markIv": _fixed(iv, 4),
        "bid1Price": plain(bid),
        "bid1Size": plain(Decimal(hash_of("bid", symbol, minute) % 5000).scaleb(-2)) if quoted else "0",
        "bid1Iv": _fixed(iv * 0.99, 4) if quoted else "0",
        "ask1Price": plain(ask),
        "ask1Size": plain(Decimal(hash_of("ask", symbol, minute) % 5000 + 1).scaleb(-2)),
        "ask1Iv": _fixed(iv * 1.01, 4),
        "lastPrice": plain(last),
        "highPrice24h": plain(on_tick(last * Decimal("1.04"), spec.tick)) if traded else plain(last),
        "lowPrice24h": plain(on_tick(last * Decimal("0.97"), spec.tick)) if traded else plain(last),
        "volume24h": plain(volume),
        "turnover24h": plain((volume * index).quantize(Decimal("0.00000001"))),
        "totalVolume": plain(total.to_integral_value()),
        "totalTurnover": plain((total * index).to_integral_value()),
        "delta": _fixed(model.delta, 8),
        "gamma": _fixed(model.gamma, 8),
        "vega": _fixed(model.vega, 8),
        "theta": _fixed(model.theta, 8),
        "predictedDeliveryPrice": "0",
        "change24h": plain(change) if traded else "0",
    }


def _instrument(option: _Option) -> Row:
    """One row of instruments-info."""
    listed, spec, coin = option.listed, option.spec, option.coin
    usdt = option.settle == "USDT"
    return {
        "symbol": option.symbol,
        "optionsType": "Call" if listed.side == "C" else "Put",
        "status": "Trading",
        "baseCoin": coin,
        "quoteCoin": "USDT" if usdt else "USD",
        "settleCoin": option.settle,
        "launchTime": str(expiry_ms(listed.expiry - timedelta(days=35 + 28 * listed.expiry_index))),
        "deliveryTime": str(expiry_ms(listed.expiry)),
        "deliveryFeeRate": "0.00015",
        "priceFilter": {"minPrice": plain(spec.tick), "maxPrice": "10000000", "tickSize": plain(spec.tick)},
        "lotSizeFilter": {"maxOrderQty": "500", "minOrderQty": "0.01", "qtyStep": "0.01"},
        "displayName": option.symbol.removesuffix("-USDT").replace("-", "USDT-", 1) if usdt else "",
    }


def _matching(rows: list[Row], params: dict[str, str]) -> list[Row]:
    """The rows of one ``symbol`` or one ``expDate`` (``25DEC22``), when asked."""
    if symbol := params.get("symbol"):
        rows = [row for row in rows if row["symbol"] == symbol]
    if expiry := params.get("expDate"):
        rows = [row for row in rows if row["symbol"].split("-")[1] == expiry]
    return rows


def _cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset={offset}".encode()).decode().rstrip("=")


def _offset(cursor: str) -> int | None:
    """The offset a cursor stands for; None if it is not one this fake handed out."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, _, value = text.partition("=")
    return int(value) if name == "offset" and value.isdigit() else None


# ---------------------------------------------------------------------------------------------- the fake


class FakeBybit(FakeVenue[_Option]):
    """Bybit's public option market data on 127.0.0.1 (random port), for ``with`` or start()/stop().

    Scopes are base coins (BTC, ETH, SOL); ``rows_for`` gives tickers' ``result.list`` rows,
    ``instruments_for`` every row of instruments-info, all pages together, in page order."""

    name = "fake-bybit"
    default_path = TICKERS

    def __init__(
        self,
        universe: Universe | None = None,
        *,
        ip_limit: int | None = None,
        ip_window_s: float = 5.0,
        ban_s: float = 600.0,
        bapi_limit: int = 50,
        **options: Unpack[VenueOptions],
    ) -> None:
        """``universe``: base coin → expiry dates; None: the default (``default_universe()``). ``ip_limit``:
        requests allowed in any ``ip_window_s``; one more starts a ``ban_s`` ban (HTTP 403). ``bapi_limit``:
        what ``X-Bapi-Limit`` says."""
        if ban_s <= 0 or bapi_limit < 1:
            raise ValueError("ban_s must be more than 0 and bapi_limit at least 1")
        super().__init__(default_universe() if universe is None else universe, **options)
        self.ban_s = ban_s
        self.bapi_limit = bapi_limit
        self.banned_until: float | None = None  # the clock's seconds; None: not banned
        self._window = None if ip_limit is None else SlidingWindow(ip_limit, ip_window_s)
        self._second = (-1, 0)  # (epoch second, requests in it) for X-Bapi-Limit-Status

    def lift_ban(self) -> None:
        with self._lock:
            self.banned_until = None
            if self._window is not None:
                self._window.reset()

    # --------------------------------------------------------------------------------- hooks

    _chains = staticmethod(_options)
    _row = staticmethod(_ticker)
    _listing = staticmethod(_instrument)

    def _admit(self, call: Call) -> Admission:
        if self.banned_until is not None and call.now >= self.banned_until:
            self.banned_until = None
            if self._window is not None:
                self._window.reset()
        if self.banned_until is None and self._window is not None and not self._window.admit(call.now):
            self.banned_until = call.now + self.ban_s
        if self.banned_until is not None:
            return Admission(refusal=Answer(403, text=ACCESS_TOO_FREQUENT, content_type=PLAIN))
        second = math.floor(call.now)
        used = self._second[1] + 1 if self._second[0] == second else 1
        self._second = (second, used)
        headers = {
            "X-Bapi-Limit": str(self.bapi_limit),
            "X-Bapi-Limit-Status": str(max(0, self.bapi_limit - used)),
            "X-Bapi-Limit-Reset-Timestamp": str((second + 1) * 1000),
        }
        return Admission(headers=headers)

    def _answer(self, call: Call) -> Answer:
        if call.path not in (TICKERS, INSTRUMENTS_INFO):
            return Answer(404, text="404 page not found", content_type=PLAIN)
        params = call.params
        if params.get("category") != "option":
            return self._params_error(call)
        coin = params.get("baseCoin", "" if call.path == TICKERS else "BTC")
        symbol = params.get("symbol", "")
        if call.path == INSTRUMENTS_INFO:
            return self._page(call, coin, _matching(self.instruments_for(coin), params))
        coin = coin or symbol.partition("-")[0]
        rows = _matching(self.rows_for(coin), params)
        if coin not in self._options or (symbol and not rows):
            return self._params_error(call)
        return self._result(call, coin, rows)

    def _page(self, call: Call, coin: str, rows: list[Row]) -> Answer:
        limit_text, cursor = call.params.get("limit", str(DEFAULT_PAGE)), call.params.get("cursor", "")
        offset = _offset(cursor) if cursor else 0
        if not limit_text.isdigit() or not 1 <= int(limit_text) <= MAX_PAGE or offset is None:
            return self._params_error(call)
        end = offset + int(limit_text)
        page = rows[offset:end]
        return self._result(call, coin, page, _cursor(end) if end < len(rows) else "")

    def _result(self, call: Call, coin: str, rows: list[Row], cursor: str | None = None) -> Answer:
        result: Row = {"category": "option"}
        if cursor is not None:
            result["nextPageCursor"] = cursor
        result["list"] = rows
        minute = self.minute()
        envelope = {"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {}}
        envelope["time"] = minute + 100 + hash_of("time", call.path, coin, minute) % 900
        return Answer(200, envelope, rows=rows)

    def _params_error(self, call: Call) -> Answer:
        envelope = {"retCode": PARAMS_ERROR, "retMsg": "params error", "result": {}, "retExtInfo": {}}
        return Answer(200, {**envelope, "time": int(call.now * 1000)})


if __name__ == "__main__":
    sys.exit(run_cli(FakeBybit))
