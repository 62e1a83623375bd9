"""A fake Deribit: the public JSON-RPC-over-HTTP option market data of /work/shared/venues.md §1.

Serves ``get_book_summary_by_currency`` (the open-interest call, one per currency: BTC, ETH, USDC) and
``get_instruments`` (the listing) with Deribit's envelope (``jsonrpc``, ``id``, ``result``, ``usIn``,
``usOut``, ``usDiff`` in µs, ``testnet``). Every number is a raw JSON number written from a ``Decimal``, so
some carry more digits than a float holds (``open_interest`` 1532.1234567890123456789, ``underlying_price``
with 15 decimals): read them with ``json.loads(body, parse_float=Decimal)``. Values Deribit types as floats
are written with a decimal point (``0.0``, ``100000.0``); timestamps are integers.

Names: inverse ``BTC-5AUG23-580-P`` (day in 1 or 2 digits) under BTC and ETH; linear ``SOL_USDC-…`` and
``XRP_USDC-30JUN23-0d625-C`` (``d`` for the decimal point) all under USDC.

Choices where venues.md says **unconfirmed** (or says nothing):
- A JSON-RPC error goes out with HTTP 400, except: ``10028`` from the rate limiter with ``rate_limit_status``
  (default 429) and ``Connection: close`` (Deribit "terminates the session"); the injected ``11051`` and
  ``13028`` with 503 by default. Every status is a parameter.
- A missing or unknown ``currency`` (or a bad ``kind``/``expired``) is ``-32602 "Invalid params"`` with
  ``data: {"param": ..., "reason": ...}``; an unknown method ``-32601 "Method not found"``.
- ``USDT`` and ``EURR`` are valid currencies without options (an empty ``result``); ``get_instruments`` also
  takes ``any``; ``kind`` other than ``option`` is an empty result (only options are listed here);
  ``expired=true`` is an empty result (nothing has expired here).
- ``id``: the request's ``id`` parameter when it is an integer, else the request's number in the log.
- ``usIn`` of a normal answer lies in the minute served (minute + 0.90-0.99 s), rows are created a few hundred
  ms into it; an error's ``usIn`` is the fake's clock.
- Rate limits (off by default): ``rate_limit`` requests per sliding second over every method, and
  ``instruments_rate_limit`` for ``get_instruments`` alone (its own 1 request/s).
- Contract sizes of linear options: SOL 10 (one third-party note), XRP 1000 (invented); XRP strikes are laid
  around 0.6 so that ``0d625``-type names appear. get_instruments rows also carry ``tick_size`` (a real field
  venues.md does not list).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Unpack

from tests.fake_http import (
    JSON,
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
    price_near,
    run_cli,
    smile,
    strike_text,
    years_left,
)

BOOK_SUMMARY = "/api/v2/public/get_book_summary_by_currency"
INSTRUMENTS = "/api/v2/public/get_instruments"
CURRENCIES = ("BTC", "ETH", "USDC", "USDT", "EURR")  # the spec's enum; options only under BTC, ETH, USDC
KINDS = ("future", "option", "spot", "future_combo", "option_combo")

TOO_MANY_REQUESTS = 10028
SYSTEM_MAINTENANCE = 11051
TEMPORARILY_UNAVAILABLE = 13028
INVALID_PARAMS = -32602
METHOD_NOT_FOUND = -32601


# ---------------------------------------------------------------------------------------------- faults


def rpc_error(code: int, message: str, *, status: int = 400, data: object = None, rpc_id: int = 1) -> Fault:
    """Deribit's JSON-RPC error envelope, e.g. ``rpc_error(10028, "too_many_requests", status=429)``."""
    return Fault(status=status, json_body=_error_envelope(code, message, data, rpc_id, _now_us()))


def too_many_requests(status: int = 429) -> Fault:
    return rpc_error(TOO_MANY_REQUESTS, "too_many_requests", status=status)


def system_maintenance(status: int = 503) -> Fault:
    return rpc_error(SYSTEM_MAINTENANCE, "system_maintenance", status=status)


def temporarily_unavailable(status: int = 503) -> Fault:
    return rpc_error(TEMPORARILY_UNAVAILABLE, "temporarily_unavailable", status=status)


def _error_envelope(code: int, message: str, data: object, rpc_id: int, us_in: int) -> Row:
    error: Row = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {
        "jsonrpc": "2.0",
        "id": rpc_id,
        "error": error,
        **_times(us_in, 150 + us_in % 700),
        "testnet": False,
    }


def _times(us_in: int, us_diff: int) -> Row:
    return {"usIn": us_in, "usOut": us_in + us_diff, "usDiff": us_diff}


def _now_us() -> int:
    return int(time.time() * 1_000_000)


# ---------------------------------------------------------------------------------------------- universe


@dataclass(frozen=True, slots=True)
class _Spec:
    """How one name prefix (``BTC``, ``SOL_USDC``) trades."""

    nominal: Decimal  # spot the strikes are laid around
    step: Decimal  # strike step near the money
    wing: int  # strikes each side of the money, nearest expiry
    peak: int  # open interest at the money, in tenths of a coin
    contract_size: Decimal
    min_trade: Decimal
    tick: Decimal  # price tick (coin for inverse, USDC for linear)
    index_places: int  # decimals of the index price
    base_iv: float


_SPECS: dict[str, _Spec] = {
    "BTC": _Spec(
        Decimal(97000), Decimal(1000), 8, 40_000, Decimal("1.0"), Decimal("0.1"), Decimal("0.0001"), 2, 0.5
    ),
    "ETH": _Spec(
        Decimal(3400), Decimal(50), 8, 300_000, Decimal("1.0"), Decimal("1.0"), Decimal("0.0001"), 2, 0.65
    ),
    "SOL": _Spec(
        Decimal(190), Decimal("2.5"), 4, 200_000, Decimal(10), Decimal("0.1"), Decimal("0.01"), 4, 0.8
    ),
    "XRP": _Spec(
        Decimal("0.6"), Decimal("0.025"), 4, 20_000_000, Decimal(1000), Decimal(1), Decimal("0.0001"), 4, 0.9
    ),
}
_GENERIC = _Spec(Decimal(100), Decimal(5), 5, 100_000, Decimal(1), Decimal("0.1"), Decimal("0.01"), 4, 0.7)


def default_universe(now: datetime | None = None) -> dict[str, list[date]]:
    """Inverse BTC and ETH, linear SOL_USDC and XRP_USDC, on the default expiries (from today)."""
    expiries = default_expiries(now)
    return {prefix: list(expiries) for prefix in ("BTC", "ETH", "SOL_USDC", "XRP_USDC")}


@dataclass(frozen=True, slots=True)
class _Option:
    name: str
    prefix: str  # part 0 of the name: BTC, SOL_USDC
    base: str
    currency: str  # the scope it is served under: BTC, ETH or USDC
    linear: bool
    spec: _Spec
    listed: Strike


def _currency(prefix: str) -> str:
    """``BTC`` → BTC, ``SOL_USDC`` → USDC."""
    return prefix.rpartition("_")[2]


def _options(universe: Universe) -> dict[str, list[_Option]]:
    by_currency: dict[str, list[_Option]] = {}
    for prefix, expiries in sorted(universe.items()):
        base, linear = prefix.partition("_")[0], "_" in prefix
        spec = _SPECS.get(base, _GENERIC)
        for listed in option_chain(expiries, spec.nominal, spec.step, spec.wing):
            strike = strike_text(listed.strike).replace(".", "d")
            name = f"{prefix}-{ddmmmyy(listed.expiry)}-{strike}-{listed.side}"
            option = _Option(name, prefix, base, _currency(prefix), linear, spec, listed)
            by_currency.setdefault(option.currency, []).append(option)
    return by_currency


# ---------------------------------------------------------------------------------------------- values


def _float(value: Decimal) -> Decimal:
    """As Deribit writes a float: always with a decimal point (``0.0``, ``100000.0``)."""
    exponent = value.as_tuple().exponent
    return value if isinstance(exponent, int) and exponent < 0 else value.quantize(Decimal("0.0"))


def _quote(value: Decimal, tick: Decimal, rounding: str, chance: Decimal, *parts: object) -> Decimal | None:
    """``value`` on the tick, or None (no quote, no trade) with probability ``chance``, fixed by ``parts``."""
    priced = on_tick(value, tick, rounding)
    return priced if priced > 0 and fraction(*parts) >= chance else None


def _maybe(value: Decimal | None) -> Decimal | None:
    return None if value is None else _float(value)


def _is_monthly(day: date) -> bool:
    return (day + timedelta(days=7)).month != day.month


def _summary(option: _Option, minute: int) -> Row:
    """One row of get_book_summary_by_currency: values fixed by (instrument, minute)."""
    spec, listed, name = option.spec, option.listed, option.name
    index = price_near(spec.nominal, option.base, minute, spec.index_places)
    years = years_left(listed.expiry, minute)
    carry = 1 + Decimal(repr(round(years, 9))) * Decimal("0.031")
    underlying = (
        index * carry + fraction("basis", option.prefix, listed.expiry, minute).scaleb(-4)
    ).quantize(Decimal("1E-15"))
    iv = smile(spec.base_iv, listed.strike, spec.nominal, name, minute)
    usd = Decimal(repr(greeks(float(underlying), float(listed.strike), listed.side, years, iv).value))
    mark = usd if option.linear else usd / underlying
    mark = max(mark, spec.tick).quantize(Decimal("1E-8"))
    mark_usd = mark if option.linear else mark * underlying
    bid = _quote(mark * Decimal("0.97"), spec.tick, ROUND_FLOOR, Decimal("0.15"), "bid", name, minute)
    ask = _quote(mark * Decimal("1.03"), spec.tick, ROUND_CEILING, Decimal("0.1"), "ask", name, minute)
    traded = mark * (Decimal("0.95") + fraction("px", name, minute) / 10)
    last = _quote(traded, spec.tick, ROUND_FLOOR, Decimal("0.3"), "last", name, minute)
    change = (fraction("change", name, minute) * 60 - 30).quantize(Decimal("0.0001"))
    tenths = open_amount(name, listed.strike, spec.nominal, spec.peak, minute)
    open_interest = Decimal(tenths).scaleb(-1) + Decimal(hash_of("tail", name, minute) % 10**18).scaleb(-19)
    volume = Decimal(hash_of("volume", name, minute) % 500).scaleb(-1) if last is not None else Decimal(0)
    underlying_index = "index_price"
    if not option.linear:
        code = f"{option.base}-{ddmmmyy(listed.expiry)}"
        underlying_index = code if _is_monthly(listed.expiry) else f"SYN.{code}"
    return {
        "instrument_name": name,
        "base_currency": option.base,
        "quote_currency": "USDC" if option.linear else "USD",
        "open_interest": _float(open_interest if tenths else Decimal(0)),
        "creation_timestamp": minute + 100 + hash_of("created", name, minute) % 800,
        "mark_price": _float(mark),
        "bid_price": _maybe(bid),
        "ask_price": _maybe(ask),
        "mid_price": None if bid is None or ask is None else _float((bid + ask) / 2),
        "last": _maybe(last),
        "high": None if last is None else _float(on_tick(last * Decimal("1.04"), spec.tick)),
        "low": None if last is None else _float(max(spec.tick, on_tick(last * Decimal("0.97"), spec.tick))),
        "underlying_price": _float(underlying),
        "underlying_index": underlying_index,
        "mark_iv": _float(Decimal(repr(iv * 100)).quantize(Decimal("0.01"))),
        "interest_rate": Decimal("0.0"),
        "price_change": None if last is None else _float(change),
        "volume": _float(volume),
        "volume_usd": _float((volume * mark_usd).quantize(Decimal("0.01"))),
        "estimated_delivery_price": _float(index),
    }


def _instrument(option: _Option) -> Row:
    """One row of get_instruments."""
    listed, spec = option.listed, option.spec
    quote = "USDC" if option.linear else "USD"
    return {
        "instrument_name": option.name,
        "kind": "option",
        "base_currency": option.base,
        "quote_currency": quote,
        "counter_currency": quote,
        "settlement_currency": "USDC" if option.linear else option.base,
        "strike": _float(listed.strike),
        "option_type": "call" if listed.side == "C" else "put",
        "expiration_timestamp": expiry_ms(listed.expiry),
        "creation_timestamp": expiry_ms(listed.expiry - timedelta(days=35 + 28 * listed.expiry_index)),
        "contract_size": _float(spec.contract_size),
        "min_trade_amount": _float(spec.min_trade),
        "tick_size": _float(spec.tick),
        "instrument_type": "linear" if option.linear else "reversed",
        "settlement_period": "month" if _is_monthly(listed.expiry) else "week",
        "is_active": True,
        "state": "open",
    }


# ---------------------------------------------------------------------------------------------- the fake


class FakeDeribit(FakeVenue[_Option]):
    """Deribit's public option market data on 127.0.0.1 (random port), for ``with`` or start()/stop().

    Scopes are currencies (BTC, ETH, USDC); ``rows_for`` gives get_book_summary_by_currency's ``result``
    rows (Decimals hold the exact digits sent), ``instruments_for`` get_instruments' (``any``: every one)."""

    name = "fake-deribit"
    default_path = BOOK_SUMMARY

    def __init__(
        self,
        universe: Universe | None = None,
        *,
        rate_limit: int | None = None,
        instruments_rate_limit: int | None = None,
        rate_limit_status: int = 429,
        **options: Unpack[VenueOptions],
    ) -> None:
        """``universe``: name prefix (``BTC``, ``ETH``, ``SOL_USDC``, ...) → expiry dates; None: the default
        (``default_universe()``). ``rate_limit``: requests per second over every method, answered 10028 with
        ``rate_limit_status`` beyond it; ``instruments_rate_limit`` likewise for get_instruments alone."""
        super().__init__(default_universe() if universe is None else universe, **options)
        self.rate_limit_status = rate_limit_status
        self._every = None if rate_limit is None else SlidingWindow(rate_limit, 1.0)
        self._instruments = (
            None if instruments_rate_limit is None else SlidingWindow(instruments_rate_limit, 1.0)
        )

    def instruments_for(self, scope: str) -> list[Row]:
        listing = super().instruments_for
        return [row for name in (self.scopes() if scope == "any" else [scope]) for row in listing(name)]

    # --------------------------------------------------------------------------------- hooks

    _chains = staticmethod(_options)
    _row = staticmethod(_summary)
    _listing = staticmethod(_instrument)

    def _admit(self, call: Call) -> Admission:
        over = self._every is not None and not self._every.admit(call.now)
        if not over and call.path == INSTRUMENTS and self._instruments is not None:
            over = not self._instruments.admit(call.now)
        if not over:
            return Admission()
        refusal = self._error(call, TOO_MANY_REQUESTS, "too_many_requests", status=self.rate_limit_status)
        return Admission(refusal=Answer(refusal.status, refusal.value, {"Connection": "close"}))

    def _answer(self, call: Call) -> Answer:
        if call.path not in (BOOK_SUMMARY, INSTRUMENTS):
            return self._error(call, METHOD_NOT_FOUND, "Method not found")
        currency, kind = call.params.get("currency"), call.params.get("kind", "option")
        allowed = (*CURRENCIES, "any") if call.path == INSTRUMENTS else CURRENCIES
        if not currency:
            return self._invalid(call, "currency", "missing")
        if currency not in allowed:
            return self._invalid(call, "currency", f"must be one of: {', '.join(allowed)}")
        if kind not in KINDS:
            return self._invalid(call, "kind", f"must be one of: {', '.join(KINDS)}")
        expired = call.params.get("expired", "false")
        if call.path == INSTRUMENTS and expired not in ("true", "false"):
            return self._invalid(call, "expired", "must be true or false")
        minute = self.minute()
        if kind != "option" or expired == "true":
            rows: list[Row] = []
        elif call.path == BOOK_SUMMARY:
            rows = self.rows_for(currency, minute)
        else:
            rows = self.instruments_for(currency)
        us_in = minute * 1000 + 900_000 + hash_of("usIn", call.path, currency, minute) % 90_000
        envelope = {"jsonrpc": "2.0", "id": _rpc_id(call), "result": rows}
        envelope |= {
            **_times(us_in, 150 + hash_of("usDiff", call.path, currency, minute) % 4000),
            "testnet": False,
        }
        return Answer(200, envelope, rows=rows)

    def _invalid(self, call: Call, param: str, reason: str) -> Answer:
        return self._error(call, INVALID_PARAMS, "Invalid params", data={"param": param, "reason": reason})

    def _error(
        self, call: Call, code: int, message: str, *, status: int = 400, data: object = None
    ) -> Answer:
        envelope = _error_envelope(code, message, data, _rpc_id(call), int(call.now * 1_000_000))
        return Answer(status, envelope, content_type=JSON)


def _rpc_id(call: Call) -> int:
    given = call.params.get("id", "")
    return int(given) if given.isdigit() else call.seq


if __name__ == "__main__":
    sys.exit(run_cli(FakeDeribit))
