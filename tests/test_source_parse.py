"""collector.venues.binance.parse_response: the one place HTTP status and body map to rows or an error."""

from __future__ import annotations

import email.utils
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from collector.errors import ExchangeError, FatalExchangeError, RetriableExchangeError
from collector.venues.binance import parse_response

WHAT = "openInterest ETH 221119"
ROWS = [
    {
        "symbol": "ETH-221119-1175-P",
        "sumOpenInterest": "4.01",
        "sumOpenInterestUsd": "4880.2985615624",
        "timestamp": "1668754020000",
    }
]
HTML_502 = (
    b"<!DOCTYPE html>\n<html>\n<head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center></body>\n</html>\n"
)
HTML_200 = b"<html><head><title>Maintenance</title></head><body>Back soon.</body></html>"


def _response(status: int, content: bytes | object, headers: dict[str, str] | None = None) -> httpx.Response:
    """A response as the client would get it; ``content`` that is not bytes is sent as JSON."""
    body = content if isinstance(content, bytes) else json.dumps(content).encode()
    request = httpx.Request("GET", "http://x/eapi/v1/openInterest")
    return httpx.Response(status, content=body, headers=headers or {}, request=request)


def _error(response: httpx.Response, what: str = WHAT) -> ExchangeError:
    with pytest.raises(ExchangeError) as raised:
        parse_response(response, what)
    return raised.value


def test_a_200_json_list_is_returned_as_is() -> None:
    assert parse_response(_response(200, ROWS), WHAT) == ROWS


def test_a_200_empty_list_is_returned_as_is() -> None:
    assert parse_response(_response(200, []), WHAT) == []


def test_a_200_json_object_without_code_and_msg_is_returned_as_is() -> None:
    info = {"timezone": "UTC", "serverTime": 1668754020000, "optionSymbols": []}
    assert parse_response(_response(200, info), "exchangeInfo") == info


def test_a_200_exchange_error_object_is_fatal_with_its_code_and_message() -> None:
    error = _error(_response(200, {"code": -1121, "msg": "Invalid symbol."}))
    assert isinstance(error, FatalExchangeError)
    assert (error.status, error.code, error.exchange_message) == (200, -1121, "Invalid symbol.")
    assert str(error) == f"{WHAT}: HTTP 200, binance error -1121: Invalid symbol."


def test_a_429_is_retriable_after_the_retry_after_seconds() -> None:
    body = {"code": -1003, "msg": "Too many requests; current limit is 2400 requests per minute."}
    error = _error(_response(429, body, {"Retry-After": "3"}))
    assert isinstance(error, RetriableExchangeError)
    assert (error.status, error.code, error.retry_after_s) == (429, -1003, 3)
    assert error.banned_until is None


def test_a_429_without_retry_after_has_no_retry_after() -> None:
    error = _error(_response(429, {"code": -1003, "msg": "Too many requests."}))
    assert isinstance(error, RetriableExchangeError)
    assert error.retry_after_s is None


@pytest.mark.parametrize(("header", "seconds"), [("30", 30.0), ("30.0", 30.0), ("1.5", 1.5), (" 7 ", 7.0)])
def test_retry_after_is_read_as_whole_or_decimal_seconds(header: str, seconds: float) -> None:
    assert (
        _error(_response(429, {"code": -1003, "msg": "x"}, {"Retry-After": header})).retry_after_s == seconds
    )


def test_retry_after_as_an_http_date_is_the_seconds_until_then() -> None:
    then = email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    waited = _error(_response(429, {"code": -1003, "msg": "x"}, {"Retry-After": then})).retry_after_s
    assert waited is not None and 85 <= waited <= 90


def test_retry_after_as_a_date_in_the_past_is_no_wait() -> None:
    past = "Wed, 21 Oct 2015 07:28:00 GMT"
    assert _error(_response(429, {"code": -1003, "msg": "x"}, {"Retry-After": past})).retry_after_s == 0.0


@pytest.mark.parametrize("header", ["-3", "", "soon", "1e9", "30s", "Wed, 99 Foo 2015"])
def test_a_retry_after_that_is_neither_seconds_nor_a_date_is_ignored(header: str) -> None:
    assert _error(_response(429, {"code": -1003, "msg": "x"}, {"Retry-After": header})).retry_after_s is None


def test_a_418_ban_is_retriable_and_says_until_when_in_aware_utc() -> None:
    body = {"code": -1003, "msg": "Way too many requests; IP banned until 1668754020000."}
    error = _error(_response(418, body, {"Retry-After": "120"}))
    assert isinstance(error, RetriableExchangeError)
    assert error.status == 418
    assert error.banned_until == datetime(2022, 11, 18, 6, 47, tzinfo=UTC)
    assert error.banned_until is not None and error.banned_until.tzinfo is UTC
    assert error.retry_after_s == 120
    assert "banned until 1668754020000" in str(error)


def test_a_418_without_a_ban_time_has_no_banned_until() -> None:
    error = _error(_response(418, {"code": -1003, "msg": "Way too many requests."}))
    assert isinstance(error, RetriableExchangeError)
    assert error.banned_until is None


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_a_5xx_with_an_exchange_error_is_retriable(status: int) -> None:
    error = _error(
        _response(status, {"code": -1001, "msg": "Internal error; unable to process your request."})
    )
    assert isinstance(error, RetriableExchangeError)
    assert (error.status, error.code) == (status, -1001)


def test_a_503_plain_text_is_retriable() -> None:
    error = _error(_response(503, b"Service Unavailable."))
    assert isinstance(error, RetriableExchangeError)
    assert error.status == 503
    assert "HTTP 503" in str(error)


def test_a_400_missing_parameter_is_fatal_with_its_code() -> None:
    body = {
        "code": -1102,
        "msg": "Mandatory parameter 'expiration' was not sent, was empty/null, or malformed.",
    }
    error = _error(_response(400, body))
    assert isinstance(error, FatalExchangeError)
    assert (error.status, error.code, error.exchange_message) == (400, -1102, body["msg"])
    assert "binance error -1102" in str(error)


@pytest.mark.parametrize("status", [400, 401, 403, 404])
def test_other_4xx_are_fatal(status: int) -> None:
    error = _error(_response(status, b""))
    assert isinstance(error, FatalExchangeError)
    assert error.status == status


def test_an_html_page_with_200_is_fatal_and_says_so() -> None:
    error = _error(_response(200, HTML_200, {"Content-Type": "text/html"}))
    assert isinstance(error, FatalExchangeError)
    assert error.status == 200
    assert error.code is None
    assert "HTTP 200 with an HTML page" in str(error)


def test_an_html_page_with_502_is_retriable_and_says_so() -> None:
    error = _error(_response(502, HTML_502, {"Content-Type": "text/html"}))
    assert isinstance(error, RetriableExchangeError)
    assert error.status == 502
    assert "HTTP 502 with an HTML page" in str(error)
    assert "502 Bad Gateway" in str(error)  # a snippet of the page, to tell the gateway from the exchange


def test_the_html_snippet_is_short_and_on_one_line() -> None:
    message = str(_error(_response(502, HTML_502 * 20)))
    assert "\n" not in message
    assert len(message) < len(WHAT) + 200
    assert f"{len(HTML_502 * 20)} bytes" in message


def test_truncated_json_with_200_is_fatal_and_says_it_is_not_json() -> None:
    error = _error(_response(200, b'[{"symbol": "ETH-221119-1175-P", "sumOpen'))
    assert isinstance(error, FatalExchangeError)
    assert "HTTP 200 with a body that is not JSON" in str(error)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage"])
def test_an_empty_or_undecodable_200_body_is_fatal(content: bytes) -> None:
    error = _error(_response(200, content))
    assert isinstance(error, FatalExchangeError)
    assert "not JSON" in str(error)


@pytest.mark.parametrize(
    "response",
    [
        _response(200, {"code": -1121, "msg": "Invalid symbol."}),
        _response(429, {"code": -1003, "msg": "Too many requests."}, {"Retry-After": "3"}),
        _response(502, HTML_502),
        _response(200, b"[{"),
        _response(404, b""),
    ],
    ids=["exchange-error", "429", "html-502", "truncated", "404"],
)
@pytest.mark.parametrize("what", [WHAT, "exchangeInfo"])
def test_every_error_message_starts_with_what_was_asked(response: httpx.Response, what: str) -> None:
    assert str(_error(response, what)).startswith(f"{what}: HTTP {response.status_code}")
