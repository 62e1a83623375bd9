"""OKX: instrument ids, the string-typed rows, the ``{"code", "msg", "data"}`` envelope and its errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest

from collector.errors import ExchangeError, FatalExchangeError, RetriableExchangeError
from collector.records import OpenInterest
from collector.venues.okx import normalise_row, parse_inst_id, parse_response

NOW = datetime.now(UTC)
TS = str(int(NOW.timestamp() * 1000) - 2_345)


@pytest.mark.parametrize(
    ("inst_id", "family", "underlying", "expiry", "strike", "side"),
    [
        ("BTC-USD-250627-100000-C", "BTC-USD", "BTC", date(2025, 6, 27), "100000", "call"),
        ("ETH-USD-220624-100100-P", "ETH-USD", "ETH", date(2022, 6, 24), "100100", "put"),
        ("XRP-USD-250627-0.625-C", "XRP-USD", "XRP", date(2025, 6, 27), "0.625", "call"),
    ],
)
def test_instrument_ids_are_read_with_exact_strikes(
    inst_id: str, family: str, underlying: str, expiry: date, strike: str, side: str
) -> None:
    parsed = parse_inst_id(inst_id)
    assert (parsed.family, parsed.underlying, parsed.expiry, str(parsed.strike), parsed.side) == (
        family,
        underlying,
        expiry,
        strike,
        side,
    )


@pytest.mark.parametrize(
    "inst_id",
    ["BTC-USD-250627-100000", "BTC-USD-SWAP", "BTC-USD-251399-1-C", "BTC-USD-250627-1-X", "BTC-USD"],
)
def test_ids_that_are_not_okx_options_are_refused(inst_id: str) -> None:
    with pytest.raises(ValueError):
        parse_inst_id(inst_id)


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "instType": "OPTION",
        "instId": "BTC-USD-250627-100000-C",
        "oi": "15230",
        "oiCcy": "152.3",
        "oiUsd": "14776000.512345678901234567",
        "ts": TS,
    }
    return {**base, **changes}


def test_a_row_is_kept_as_served_coin_and_usd_from_okx_its_own_time() -> None:
    record = normalise_row(row(), "BTC-USD", NOW)
    assert isinstance(record, OpenInterest)
    assert (record.venue, record.symbol, record.underlying, record.side) == (
        "okx",
        "BTC-USD-250627-100000-C",
        "BTC",
        "call",
    )
    assert (str(record.open_interest), str(record.open_interest_usd)) == (
        "152.3",
        "14776000.512345678901234567",
    )
    assert record.underlying_price is None
    assert int(record.ts.timestamp() * 1000) == int(TS) and record.ts.tzinfo == UTC


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instId": "ETH-USD-250627-3000-C"}, "instId"),  # another family than the one asked for
        ({"instId": "BTC-USD-SWAP"}, "instId"),
        ({"instType": "SWAP"}, "instType"),
        ({"oiCcy": Decimal("152.3")}, "oiCcy"),  # documented as a string: a number is not taken for one
        ({"oiCcy": "-1"}, "oiCcy"),
        ({"oiCcy": "1" * 40}, "oiCcy"),
        ({"oiUsd": None}, "oiUsd"),
        ({"ts": str(int(NOW.timestamp()))}, "ts"),  # seconds, not milliseconds
        ({"ts": "soon"}, "ts"),
    ],
)
def test_a_bad_row_is_rejected_naming_the_field(changes: dict[str, object], field: str) -> None:
    rejection = normalise_row(row(**changes), "BTC-USD", NOW)
    assert not isinstance(rejection, OpenInterest)
    assert rejection.field == field


def test_a_row_without_oi_usd_is_rejected() -> None:
    bad = row()
    del bad["oiUsd"]
    rejection = normalise_row(bad, "BTC-USD", NOW)
    assert not isinstance(rejection, OpenInterest) and (rejection.field, rejection.reason) == (
        "oiUsd",
        "is missing",
    )


def _error(status: int, body: object) -> ExchangeError:
    request = httpx.Request("GET", "http://x/api/v5/public/open-interest")
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(ExchangeError) as raised:
        parse_response(httpx.Response(status, content=content, request=request), "open-interest BTC-USD")
    return raised.value


def test_the_data_of_a_good_answer_is_returned() -> None:
    request = httpx.Request("GET", "http://x/api/v5/public/open-interest")
    good = httpx.Response(200, content=b'{"code":"0","msg":"","data":[]}', request=request)
    assert parse_response(good, "x") == []


@pytest.mark.parametrize("status", [200, 429])
def test_50011_pauses_every_okx_request_on_http_200_and_on_429(status: int) -> None:
    error = _error(status, {"code": "50011", "msg": "Rate limit reached.", "data": []})
    assert isinstance(error, RetriableExchangeError)
    assert (error.status, error.code, error.hold) == (status, 50011, "pause")
    assert str(error) == f"open-interest BTC-USD: HTTP {status}, okx error 50011: Rate limit reached."


@pytest.mark.parametrize(("status", "code"), [(429, 50013), (503, 50001), (400, 50004)])
def test_busy_unavailable_and_timeouts_are_retried(status: int, code: int) -> None:
    error = _error(status, {"code": str(code), "msg": "try later", "data": []})
    assert isinstance(error, RetriableExchangeError) and error.code == code


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"code": "51000", "msg": "Parameter instFamily error", "data": []}, 51000),
        (200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, 51001),  # an error on 200
        (200, {"code": "0", "msg": ""}, None),  # no data
        (200, {"code": "x1", "msg": "odd"}, None),  # a code that is no number is kept in the message
        (200, b"<html><body>blocked</body></html>", None),
        (404, {"code": "404", "msg": "Not Found", "data": []}, 404),
    ],
)
def test_other_answers_are_fatal_and_say_what_came_back(status: int, body: object, code: int | None) -> None:
    error = _error(status, body)
    assert isinstance(error, FatalExchangeError)
    assert (error.status, error.code) == (status, code)
