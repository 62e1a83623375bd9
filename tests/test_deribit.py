"""Deribit: instrument names, the JSON-RPC envelope and its errors, exact numbers; and end to end through the
CLI against the fake Deribit beside the fake Binance, into a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import pytest

from collector.config import Settings
from collector.errors import ExchangeError, FatalExchangeError, RetriableExchangeError
from collector.records import Rejection
from collector.venues.deribit import normalise_rows, parse_instrument, parse_response
from tests.conftest import StoredRow, cli_env, run_cli, stored_rows
from tests.fake_deribit import FakeDeribit, too_many_requests
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange, html_page, http_error

NOW = datetime.now(UTC)


@pytest.mark.parametrize(
    ("name", "underlying", "linear", "expiry", "strike", "side"),
    [
        ("BTC-27JUN25-100000-C", "BTC", False, date(2025, 6, 27), "100000", "call"),
        ("BTC-5AUG23-580-P", "BTC", False, date(2023, 8, 5), "580", "put"),
        ("XRP_USDC-30JUN23-0d625-C", "XRP", True, date(2023, 6, 30), "0.625", "call"),
        ("SOL_USDC-26MAR27-80-C", "SOL", True, date(2027, 3, 26), "80", "call"),
        ("XRP_USDC-30JUN23-4D6-P", "XRP", True, date(2023, 6, 30), "4.6", "put"),
    ],
)
def test_instrument_names_are_read_with_decimal_strikes(
    name: str, underlying: str, linear: bool, expiry: date, strike: str, side: str
) -> None:
    instrument = parse_instrument(name)
    parts = (
        instrument.underlying,
        instrument.linear,
        instrument.expiry,
        str(instrument.strike),
        instrument.side,
    )
    assert parts == (underlying, linear, expiry, strike, side)


@pytest.mark.parametrize(
    "name", ["BTC-27JUN25-100000", "BTC-27XYZ25-1-C", "BTC-31FEB25-1-C", "BTC-27JUN25-1-X"]
)
def test_names_that_are_not_deribit_options_are_refused(name: str) -> None:
    with pytest.raises(ValueError):
        parse_instrument(name)


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "instrument_name": "BTC-27JUN25-100000-C",
        "base_currency": "BTC",
        "open_interest": Decimal("1532.1234567890123456789"),
        "underlying_price": Decimal("97010.123456789012345"),
        "creation_timestamp": int(NOW.timestamp() * 1000) - 1234,
    }
    return {**base, **changes}


def test_a_row_keeps_every_digit_deribit_sent() -> None:
    [record], rejections = normalise_rows([row()], "BTC", NOW)
    assert rejections == []
    assert record.open_interest == Decimal("1532.1234567890123456789")
    assert str(record.underlying_price) == "97010.123456789012345"
    assert (record.venue, record.open_interest_usd, record.ts.tzinfo) == ("deribit", None, UTC)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"instrument_name": "ETH-27JUN25-3000-C"}, "instrument_name"),  # not of the currency asked for
        ({"instrument_name": "SOL_USDC-27JUN25-80-C"}, "instrument_name"),  # a linear option under BTC
        ({"open_interest": 1.5}, "open_interest"),  # a float would lose digits: refused
        ({"open_interest": Decimal("-1")}, "open_interest"),
        ({"open_interest": Decimal("1" * 40)}, "open_interest"),
        ({"creation_timestamp": int(NOW.timestamp())}, "creation_timestamp"),  # seconds, not ms
        ({"creation_timestamp": int(NOW.timestamp() * 1000) + 86_400_000}, "creation_timestamp"),
        ({"underlying_price": "97010"}, "underlying_price"),
    ],
)
def test_a_bad_row_is_rejected_naming_the_field_and_the_others_kept(
    changes: dict[str, object], field: str
) -> None:
    bad = row(**{"instrument_name": "BTC-27JUN25-90000-P", **changes})
    records, rejections = normalise_rows([row(), bad], "BTC", NOW)
    assert [r.symbol for r in records] == ["BTC-27JUN25-100000-C"]
    assert [r.field for r in rejections] == [field]


def test_a_row_served_twice_is_kept_once() -> None:
    records, rejections = normalise_rows([row(), row(open_interest=Decimal(9))], "BTC", NOW)
    assert [r.open_interest for r in records] == [Decimal("1532.1234567890123456789")]
    assert isinstance(rejections[0], Rejection) and "twice" in rejections[0].reason


def _response(status: int, body: object) -> httpx.Response:
    request = httpx.Request("GET", "http://x/api/v2/public/get_book_summary_by_currency")
    return httpx.Response(status, content=json.dumps(body).encode(), request=request)


def _error(response: httpx.Response) -> ExchangeError:
    with pytest.raises(ExchangeError) as raised:
        parse_response(response, "get_book_summary_by_currency BTC")
    return raised.value


def test_the_result_of_a_good_answer_is_returned() -> None:
    assert parse_response(_response(200, {"jsonrpc": "2.0", "id": 1, "result": []}), "x") == []


@pytest.mark.parametrize("status", [400, 429])
def test_too_many_requests_pauses_every_request(status: int) -> None:
    error = _error(
        _response(status, {"jsonrpc": "2.0", "error": {"code": 10028, "message": "too_many_requests"}})
    )
    assert isinstance(error, RetriableExchangeError)
    assert (error.code, error.hold, error.exchange_message) == (10028, "pause", "too_many_requests")


def test_maintenance_is_retried_and_an_unknown_currency_is_not() -> None:
    maintenance = _error(_response(503, {"error": {"code": 11051, "message": "system_maintenance"}}))
    assert isinstance(maintenance, RetriableExchangeError) and maintenance.hold == "backoff"
    invalid = _error(_response(400, {"error": {"code": -32602, "message": "Invalid params"}}))
    assert isinstance(invalid, FatalExchangeError) and invalid.code == -32602


# ---- end to end: Deribit beside Binance, through the CLI


@pytest.fixture
def deribit() -> Iterator[FakeDeribit]:
    with FakeDeribit() as fake:
        yield fake


@pytest.fixture
def binance() -> Iterator[FakeExchange]:
    with FakeExchange({"BTC": ["251226"]}, minute_ms=RECENT_MINUTE_MS) as fake:
        yield fake


def both(settings: Settings, binance: FakeExchange, deribit: FakeDeribit, **extra: str) -> dict[str, str]:
    return cli_env(
        settings,
        OI_BINANCE_BASE_URL=binance.base_url,
        OI_BINANCE_UNDERLYINGS="BTC",
        OI_VENUES_ENABLED="binance,deribit",
        OI_DERIBIT_BASE_URL=deribit.base_url,
        **extra,
    )


def served(deribit: FakeDeribit) -> dict[str, StoredRow]:
    """What the fake served, as stored_rows gives it: Deribit's numbers are JSON numbers, written out."""
    return {
        row["instrument_name"]: (
            str(row["creation_timestamp"]),
            format(Decimal(row["open_interest"]), "f"),
            None,
            None if row["underlying_price"] is None else format(Decimal(row["underlying_price"]), "f"),
        )
        for scope in deribit.scopes()
        for row in deribit.rows_for(scope)
    }


def test_every_deribit_row_is_stored_digit_for_digit_beside_binance(
    settings: Settings, binance: FakeExchange, deribit: FakeDeribit
) -> None:
    deribit.minute_ms = int(datetime.now(UTC).timestamp() // 60 * 60_000)
    result = run_cli("once", env=both(settings, binance, deribit))
    assert result.returncode == 0, result.stderr
    assert stored_rows(settings.database.url, "deribit") == served(deribit)
    assert len(stored_rows(settings.database.url, "binance")) == len(binance.rows_for("BTC", "251226"))
    assert len(deribit.requests_to("/api/v2/public/get_book_summary_by_currency")) == 3  # one per currency


def test_deribit_down_costs_only_deribit(
    settings: Settings, binance: FakeExchange, deribit: FakeDeribit
) -> None:
    deribit.inject(html_page(502), times=None)
    result = run_cli("once", env=both(settings, binance, deribit, OI_EXCHANGE_TIMEOUT_S="1"))
    assert result.returncode == 1
    assert stored_rows(settings.database.url, "deribit") == {}
    assert len(stored_rows(settings.database.url, "binance")) == len(binance.rows_for("BTC", "251226"))


def test_a_deribit_rate_limit_pauses_deribit_only(
    settings: Settings, binance: FakeExchange, deribit: FakeDeribit
) -> None:
    deribit.minute_ms = int(datetime.now(UTC).timestamp() // 60 * 60_000)
    deribit.inject(too_many_requests(), currency="BTC")
    result = run_cli("once", env=both(settings, binance, deribit))
    assert result.returncode == 0, result.stderr
    assert "rate limited (HTTP 429)" in result.stderr
    assert stored_rows(settings.database.url, "deribit") == served(deribit)  # the paused request went again


def test_a_binance_ban_never_pauses_deribit(
    settings: Settings, binance: FakeExchange, deribit: FakeDeribit
) -> None:
    deribit.minute_ms = int(datetime.now(UTC).timestamp() // 60 * 60_000)
    binance.inject(http_error(418, -1003, "Way too many requests; IP banned.", retry_after=300), times=None)
    result = run_cli("once", env=both(settings, binance, deribit))
    assert result.returncode == 1
    assert stored_rows(settings.database.url, "deribit") == served(deribit)
    assert "binance banned this IP (HTTP 418)" in result.stderr
