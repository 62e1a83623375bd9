"""Bybit: symbols with and without the settle coin, the envelope's one time, ``retCode`` on HTTP 200, and the
403 ban."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from collector.errors import ExchangeError, FatalExchangeError, RetriableExchangeError
from collector.normalise import keep_rows
from collector.records import OpenInterest
from collector.venues.bybit import normalise_row, parse_response, parse_symbol

NOW = datetime.now(UTC)
ANSWERED = NOW - timedelta(seconds=3)


@pytest.mark.parametrize(
    ("symbol", "underlying", "expiry", "strike", "side", "settle"),
    [
        ("BTC-30DEC22-18000-C", "BTC", date(2022, 12, 30), "18000", "call", "USDC"),
        ("ETH-3JAN23-1250-P", "ETH", date(2023, 1, 3), "1250", "put", "USDC"),
        ("BTC-27MAR26-70000-P-USDT", "BTC", date(2026, 3, 27), "70000", "put", "USDT"),
        ("XRP-27JUN25-2.5-C", "XRP", date(2025, 6, 27), "2.5", "call", "USDC"),
    ],
)
def test_symbols_are_read_with_their_settle_coin(
    symbol: str, underlying: str, expiry: date, strike: str, side: str, settle: str
) -> None:
    parsed = parse_symbol(symbol)
    assert (parsed.underlying, parsed.expiry, str(parsed.strike), parsed.side, parsed.settle) == (
        underlying,
        expiry,
        strike,
        side,
        settle,
    )


@pytest.mark.parametrize(
    "symbol", ["BTC-30DEC22-18000", "BTC-30XYZ22-1-C", "BTC-31FEB25-1-C", "BTCUSDT", "BTC-30DEC22-1-C-"]
)
def test_symbols_that_are_not_bybit_options_are_refused(symbol: str) -> None:
    with pytest.raises(ValueError):
        parse_symbol(symbol)


def ticker(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "symbol": "BTC-27JUN25-100000-C",
        "openInterest": "412.37",
        "markPrice": "10850.12",
        "indexPrice": "97050.3",
        "underlyingPrice": "98010.512345678901234",
    }
    return {**base, **changes}


def test_a_ticker_is_kept_as_served_dated_by_the_answer() -> None:
    record = normalise_row(ticker(), "BTC", ANSWERED, NOW)
    assert isinstance(record, OpenInterest)
    assert (record.venue, record.ts, str(record.open_interest)) == ("bybit", ANSWERED, "412.37")
    assert (record.open_interest_usd, str(record.underlying_price)) == (None, "98010.512345678901234")


def test_usdt_and_usdc_twins_are_two_rows_keyed_by_the_full_symbol() -> None:
    twin = ticker(symbol="BTC-27JUN25-100000-C-USDT", openInterest="35.1")
    kept = keep_rows([ticker(), twin], lambda raw: normalise_row(raw, "BTC", ANSWERED, NOW), "symbol")
    assert kept.rejections == []
    assert {(r.symbol, str(r.open_interest)) for r in kept.records} == {
        ("BTC-27JUN25-100000-C", "412.37"),
        ("BTC-27JUN25-100000-C-USDT", "35.1"),
    }


def test_an_empty_price_is_stored_as_null_not_refused() -> None:
    record = normalise_row(ticker(underlyingPrice=""), "BTC", ANSWERED, NOW)
    assert isinstance(record, OpenInterest) and record.underlying_price is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"symbol": "ETH-27JUN25-3000-C"}, "symbol"),  # another coin than the one asked for
        ({"symbol": "BTCUSDT"}, "symbol"),
        ({"openInterest": Decimal("412.37")}, "openInterest"),  # documented as a string
        ({"openInterest": "-1"}, "openInterest"),
        ({"openInterest": ""}, "openInterest"),
        ({"underlyingPrice": "NaN"}, "underlyingPrice"),
    ],
)
def test_a_bad_ticker_is_rejected_naming_the_field(changes: dict[str, object], field: str) -> None:
    rejection = normalise_row(ticker(**changes), "BTC", ANSWERED, NOW)
    assert not isinstance(rejection, OpenInterest)
    assert rejection.field == field


def _response(status: int, body: object, content_type: str = "application/json") -> httpx.Response:
    request = httpx.Request("GET", "http://x/v5/market/tickers")
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(status, content=content, request=request, headers={"Content-Type": content_type})


def _error(response: httpx.Response) -> ExchangeError:
    with pytest.raises(ExchangeError) as raised:
        parse_response(response, "tickers BTC")
    return raised.value


def test_a_good_answer_is_returned_whole_for_its_time() -> None:
    envelope = {"retCode": 0, "retMsg": "OK", "result": {"list": []}, "time": 1}
    assert parse_response(_response(200, envelope), "x") == envelope


def test_403_is_the_ip_ban() -> None:
    error = _error(_response(403, "access too frequent", "text/plain"))
    assert isinstance(error, RetriableExchangeError)
    assert (error.status, error.hold) == (403, "ban")
    assert "access too frequent" in str(error)


def test_10006_on_http_200_pauses_bybit() -> None:
    error = _error(_response(200, {"retCode": 10006, "retMsg": "Too many visits!", "result": {}}))
    assert isinstance(error, RetriableExchangeError)
    assert (error.code, error.hold, error.exchange_message) == (10006, "pause", "Too many visits!")


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (200, {"retCode": 10001, "retMsg": "params error", "result": {}}, 10001),
        (200, {"retMsg": "OK", "result": {"list": []}}, None),  # no retCode
        (404, "404 page not found", None),
    ],
)
def test_other_answers_are_fatal(status: int, body: object, code: int | None) -> None:
    error = _error(_response(status, body))
    assert isinstance(error, FatalExchangeError)
    assert (error.status, error.code) == (status, code)


def test_a_server_error_is_retried_with_backoff() -> None:
    error = _error(_response(502, "<html>bad gateway</html>", "text/html"))
    assert isinstance(error, RetriableExchangeError) and error.hold == "backoff"
