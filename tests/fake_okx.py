"""A fake OKX: the public v5 option market data of /work/shared/venues.md §2.

Serves ``public/open-interest`` (the open-interest call, one per instrument family: BTC-USD, ETH-USD),
``public/instruments`` (the listing) and ``public/underlying`` (the families) with OKX's envelope
``{"code":"0","msg":"","data":[...]}``. Every row value is a string: ``oi`` in contracts, ``oiCcy`` = ``oi`` *
``ctVal`` exactly (0.01 BTC, 0.1 ETH), ``oiUsd`` with many decimals, ``ts`` a per-row ms string a few hundred
ms into the minute. Names: ``BTC-USD-250627-100000-C``; ``expTime`` at 08:00 UTC.

Choices where venues.md says **unconfirmed** (or says nothing):
- Errors come with ``"data":[]``. A bad parameter is HTTP 400: unknown family ``51000 "Parameter instFamily
  error"``; unknown ``instType`` ``51000 "Parameter instType error"``; a missing ``instType`` or (for OPTION)
  ``instFamily`` ``50014 "Parameter {name} can not be empty."``; an ``instId`` outside the family ``51001
  "Instrument ID does not exist"``. ``instType`` SWAP/FUTURES/EVENTS are valid and empty here.
- ``rate_limit=(20, 2.0)`` (``LIMIT``; off by default) counts per path and family (per path and ``instType``
  for the calls without a family), over a sliding window; beyond it ``50011 "Too Many Requests"`` with
  ``rate_limit_status`` (default 429; 200 sends the documented "Rate limit reached…" variant).
- An unknown path is HTTP 404 ``{"code":"404","msg":"Not Found","data":[]}``. No rate-limit headers.
- ``listTime`` is 08:00 UTC some weeks before expiry; ``tickSz`` 0.0005, ``lotSz``/``minSz`` 1.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Unpack

from tests.fake_http import (
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
    default_expiries,
    expiry_ms,
    hash_of,
    open_amount,
    option_chain,
    plain,
    price_near,
    run_cli,
    strike_text,
    yymmdd,
)

OPEN_INTEREST = "/api/v5/public/open-interest"
INSTRUMENTS = "/api/v5/public/instruments"
UNDERLYING = "/api/v5/public/underlying"
INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION", "EVENTS")
LIMIT = (20, 2.0)  # open-interest and instruments: 20 requests per 2 seconds

TOO_MANY_REQUESTS = "50011"
SYSTEMS_BUSY = "50013"
SERVICE_UNAVAILABLE = "50001"
ENDPOINT_TIMEOUT = "50004"
EMPTY_PARAMETER = "50014"
PARAMETER_ERROR = "51000"
NO_SUCH_INSTRUMENT = "51001"
RATE_LIMIT_REACHED = (
    "Rate limit reached. Please refer to API documentation and throttle requests accordingly."
)


# ---------------------------------------------------------------------------------------------- faults


def okx_error(code: str, msg: str, status: int) -> Fault:
    """OKX's error envelope with that HTTP status, e.g. ``okx_error("50011", "Too Many Requests", 429)``."""
    return Fault(status=status, json_body=_error(code, msg))


def too_many_requests() -> Fault:
    return okx_error(TOO_MANY_REQUESTS, "Too Many Requests", 429)


def rate_limit_reached() -> Fault:
    """50011 as documented on HTTP 200."""
    return okx_error(TOO_MANY_REQUESTS, RATE_LIMIT_REACHED, 200)


def systems_busy() -> Fault:
    return okx_error(SYSTEMS_BUSY, "Systems are busy. Please try again later.", 429)


def service_unavailable() -> Fault:
    return okx_error(SERVICE_UNAVAILABLE, "Service temporarily unavailable. Please try again later.", 503)


def endpoint_timeout() -> Fault:
    msg = (
        "API endpoint request timeout (does not mean that the request was successful or failed, "
        "please check the request result)."
    )
    return okx_error(ENDPOINT_TIMEOUT, msg, 400)


def _error(code: str, msg: str) -> dict[str, object]:
    return {"code": code, "msg": msg, "data": []}


# ---------------------------------------------------------------------------------------------- universe


@dataclass(frozen=True, slots=True)
class _Spec:
    nominal: Decimal
    step: Decimal
    wing: int
    peak: int  # open interest at the money, in contracts
    ct_val: Decimal  # coin per contract


_SPECS: dict[str, _Spec] = {
    "BTC-USD": _Spec(Decimal(97000), Decimal(1000), 8, 30_000, Decimal("0.01")),
    "ETH-USD": _Spec(Decimal(3400), Decimal(50), 8, 40_000, Decimal("0.1")),
}
_GENERIC = _Spec(Decimal(100), Decimal(5), 5, 10_000, Decimal(1))


def default_universe(now: datetime | None = None) -> dict[str, list[date]]:
    """BTC-USD and ETH-USD on the default expiries (from today)."""
    expiries = default_expiries(now)
    return {family: list(expiries) for family in _SPECS}


@dataclass(frozen=True, slots=True)
class _Option:
    inst_id: str
    family: str
    base: str
    spec: _Spec
    listed: Strike


def _options(universe: Universe) -> dict[str, list[_Option]]:
    by_family: dict[str, list[_Option]] = {}
    for family, expiries in sorted(universe.items()):
        spec = _SPECS.get(family, _GENERIC)
        for listed in option_chain(expiries, spec.nominal, spec.step, spec.wing):
            inst_id = f"{family}-{yymmdd(listed.expiry)}-{strike_text(listed.strike)}-{listed.side}"
            option = _Option(inst_id, family, family.partition("-")[0], spec, listed)
            by_family.setdefault(family, []).append(option)
    return by_family


def _open_interest(option: _Option, minute: int) -> Row:
    spec = option.spec
    contracts = open_amount(option.inst_id, option.listed.strike, spec.nominal, spec.peak, minute)
    coin = Decimal(contracts) * spec.ct_val
    index = price_near(spec.nominal, option.base, minute, 8)
    return {
        "instType": "OPTION",
        "instId": option.inst_id,
        "oi": str(contracts),
        "oiCcy": plain(coin),
        "oiUsd": plain(coin * index),
        "ts": str(minute + 100 + hash_of("ts", option.inst_id, minute) % 800),
    }


def _instrument(option: _Option) -> Row:
    listed, base = option.listed, option.base
    return {
        "instType": "OPTION",
        "instId": option.inst_id,
        "uly": option.family,
        "instFamily": option.family,
        "settleCcy": base,
        "ctVal": plain(option.spec.ct_val),
        "ctMult": "1",
        "ctValCcy": base,
        "optType": listed.side,
        "stk": strike_text(listed.strike),
        "listTime": str(expiry_ms(listed.expiry - timedelta(days=35 + 28 * listed.expiry_index))),
        "expTime": str(expiry_ms(listed.expiry)),
        "state": "live",
        "lotSz": "1",
        "minSz": "1",
        "tickSz": "0.0005",
    }


# ---------------------------------------------------------------------------------------------- the fake


class FakeOkx(FakeVenue[_Option]):
    """OKX's public option market data on 127.0.0.1 (random port), for ``with`` or start()/stop().

    Scopes are instrument families (BTC-USD, ETH-USD: what ``public/underlying`` lists); ``rows_for`` gives
    open-interest's ``data`` rows, ``instruments_for`` public/instruments'."""

    name = "fake-okx"
    default_path = OPEN_INTEREST

    def __init__(
        self,
        universe: Universe | None = None,
        *,
        rate_limit: tuple[int, float] | None = None,
        rate_limit_status: int = 429,
        **options: Unpack[VenueOptions],
    ) -> None:
        """``universe``: family (``BTC-USD``) → expiry dates; None: the default (``default_universe()``).
        ``rate_limit``: (requests, seconds) per path and family, e.g. ``LIMIT``; answered 50011 beyond it
        with ``rate_limit_status``."""
        super().__init__(default_universe() if universe is None else universe, **options)
        self.rate_limit_status = rate_limit_status
        self._window = None if rate_limit is None else SlidingWindow(*rate_limit)

    # --------------------------------------------------------------------------------- hooks

    _chains = staticmethod(_options)
    _row = staticmethod(_open_interest)
    _listing = staticmethod(_instrument)

    def _admit(self, call: Call) -> Admission:
        key = (call.path, call.params.get("instFamily") or call.params.get("instType"))
        if self._window is None or self._window.admit(call.now, key):
            return Admission()
        msg = "Too Many Requests" if self.rate_limit_status == 429 else RATE_LIMIT_REACHED
        return Admission(refusal=Answer(self.rate_limit_status, _error(TOO_MANY_REQUESTS, msg)))

    def _answer(self, call: Call) -> Answer:
        if call.path not in (OPEN_INTEREST, INSTRUMENTS, UNDERLYING):
            return Answer(404, _error("404", "Not Found"))
        inst_type = call.params.get("instType", "")
        if not inst_type:
            return _empty_parameter("instType")
        if inst_type not in INST_TYPES:
            return Answer(400, _error(PARAMETER_ERROR, "Parameter instType error"))
        if call.path == UNDERLYING:
            return _data([self.scopes() if inst_type == "OPTION" else []])
        if inst_type != "OPTION":
            return _data([])
        family = call.params.get("instFamily") or call.params.get("uly", "")
        if not family:
            return _empty_parameter("instFamily")
        if family not in self._options:
            return Answer(400, _error(PARAMETER_ERROR, "Parameter instFamily error"))
        rows = self.rows_for(family) if call.path == OPEN_INTEREST else self.instruments_for(family)
        if inst_id := call.params.get("instId"):
            rows = [row for row in rows if row["instId"] == inst_id]
            if not rows:
                return Answer(400, _error(NO_SUCH_INSTRUMENT, "Instrument ID does not exist"))
        return _data(rows)


def _data(rows: Sequence[object]) -> Answer:
    listed: list[object] = list(rows)
    return Answer(200, {"code": "0", "msg": "", "data": listed}, rows=listed)


def _empty_parameter(name: str) -> Answer:
    return Answer(400, _error(EMPTY_PARAMETER, f"Parameter {name} can not be empty."))


if __name__ == "__main__":
    sys.exit(run_cli(FakeOkx))
