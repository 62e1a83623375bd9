"""The fake Deribit, OKX and Bybit behave as /work/shared/venues.md says, over real HTTP: envelopes and types,
names, listings and pages, errors and rate limits, faults, values fixed per minute, and ``rows_for`` equal to
what is served, digit for digit."""

from __future__ import annotations

import json
import math
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tests import fake_bybit, fake_deribit, fake_okx
from tests.fake_bybit import INSTRUMENTS_INFO, TICKERS, FakeBybit
from tests.fake_deribit import BOOK_SUMMARY, FakeDeribit
from tests.fake_deribit import INSTRUMENTS as DERIBIT_INSTRUMENTS
from tests.fake_exchange import html_page
from tests.fake_http import ANY_PATH, DROPPED, FakeVenue, Fault, default_expiries, json_text
from tests.fake_okx import INSTRUMENTS as OKX_INSTRUMENTS
from tests.fake_okx import LIMIT, OPEN_INTEREST, UNDERLYING, FakeOkx
from tests.test_fake_exchange import Clock

MINUTE = 1_766_736_000_000  # 2025-12-26 08:00 UTC
T0 = MINUTE / 1000 + 0.25
BTC = {"currency": "BTC", "kind": "option"}
BTC_USD = {"instType": "OPTION", "instFamily": "BTC-USD"}
BTC_COIN = {"category": "option", "baseCoin": "BTC"}

INVERSE = re.compile(
    r"(?P<base>BTC|ETH)-(?P<day>\d{1,2})(?P<month>[A-Z]{3})(?P<year>\d{2})-(?P<strike>\d+)-[CP]"
)
LINEAR = re.compile(r"(?P<base>[A-Z]+)_USDC-\d{1,2}[A-Z]{3}\d{2}-(?P<strike>\d+(?:d\d+)?)-[CP]")
OKX_ID = re.compile(r"(?P<family>(?:BTC|ETH)-USD)-(?P<expiry>\d{6})-(?P<strike>\d+)-(?P<side>[CP])")
BYBIT_SYMBOL = re.compile(r"(?P<base>BTC|ETH|SOL)-\d{1,2}[A-Z]{3}\d{2}-\d+-[CP](?P<usdt>-USDT)?")


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def deribit() -> Iterator[FakeDeribit]:
    with FakeDeribit(minute_ms=MINUTE) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def okx() -> Iterator[FakeOkx]:
    with FakeOkx(minute_ms=MINUTE) as fake:
        yield fake
    assert fake.server_errors == []


@pytest.fixture
def bybit() -> Iterator[FakeBybit]:
    with FakeBybit(minute_ms=MINUTE) as fake:
        yield fake
    assert fake.server_errors == []


def client(fake: FakeVenue[Any]) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, timeout=5.0)


def exact(body: str) -> Any:
    """JSON with every number as a Decimal (integers too), so values compare digit for digit."""
    return json.loads(body, parse_float=Decimal, parse_int=Decimal)


def texts(value: Any) -> Any:
    """The same structure with every number as its text: ``Decimal("1.10")`` stays ``1.10``."""
    if isinstance(value, dict):
        return {key: texts(item) for key, item in value.items()}
    if isinstance(value, list):
        return [texts(item) for item in value]
    return str(value) if isinstance(value, int | Decimal) and not isinstance(value, bool) else value


def at_eight(ms: int | str) -> bool:
    when = datetime.fromtimestamp(int(ms) / 1000, UTC)
    return (when.hour, when.minute, when.second, when.microsecond) == (8, 0, 0, 0)


def in_minute(ms: int | str, minute: int = MINUTE) -> bool:
    """Inside the minute served, and not on its first millisecond."""
    return minute < int(ms) < minute + 60_000


# ------------------------------------------------------------------------------------------- expiries


def test_default_expiries_are_three_fridays_and_two_month_ends() -> None:
    wednesday = datetime(2026, 1, 28, 12, tzinfo=UTC)
    assert default_expiries(wednesday) == [
        date(2026, 1, 30),
        date(2026, 2, 6),
        date(2026, 2, 13),
        date(2026, 2, 27),
        date(2026, 3, 27),
    ]
    friday = date(2026, 1, 30)
    assert default_expiries(datetime(2026, 1, 30, 7, 59, tzinfo=UTC))[0] == friday
    assert default_expiries(datetime(2026, 1, 30, 8, 0, tzinfo=UTC))[0] == date(2026, 2, 6)
    assert default_expiries(datetime(2026, 12, 1, tzinfo=UTC))[-2:] == [date(2027, 1, 29), date(2027, 2, 26)]


def test_default_universes_follow_today_and_stay_a_few_hundred_rows() -> None:
    today = default_expiries()
    assert all(day.weekday() == 4 for day in today)
    assert len(today) == 5
    for fake in (FakeDeribit(), FakeOkx(), FakeBybit()):
        assert {tuple(expiries) for expiries in fake.universe.values()} == {tuple(today)}
    deribit, okx, bybit = (
        FakeDeribit(minute_ms=MINUTE),
        FakeOkx(minute_ms=MINUTE),
        FakeBybit(minute_ms=MINUTE),
    )
    sizes = [len(deribit.rows_for(currency)) for currency in deribit.scopes()]
    sizes += [len(okx.rows_for(family)) for family in okx.scopes()]
    sizes += [len(bybit.rows_for(coin)) for coin in bybit.scopes()]
    assert all(150 <= size <= 600 for size in sizes), sizes
    assert deribit.scopes() == ["BTC", "ETH", "USDC"]
    assert okx.scopes() == ["BTC-USD", "ETH-USD"]
    assert bybit.scopes() == ["BTC", "ETH", "SOL"]


def test_a_universe_overrides_the_default() -> None:
    fake = FakeDeribit({"BTC": [date(2023, 8, 5)], "XRP_USDC": [date(2023, 6, 30)]}, minute_ms=MINUTE)
    names = [row["instrument_name"] for row in fake.rows_for("BTC")]
    assert names[0].startswith("BTC-5AUG23-") and all(name.startswith("BTC-5AUG23-") for name in names)
    assert "XRP_USDC-30JUN23-0d625-C" in [row["instrument_name"] for row in fake.rows_for("USDC")]
    assert fake.scopes() == ["BTC", "USDC"]
    assert (
        FakeOkx({"BTC-USD": [date(2025, 6, 27)]})
        .rows_for("BTC-USD")[0]["instId"]
        .startswith("BTC-USD-250627-")
    )
    fake_bybit_one = FakeBybit({"ETH": [date(2023, 1, 3)]})
    assert fake_bybit_one.rows_for("ETH")[0]["symbol"].startswith("ETH-3JAN23-")


# ------------------------------------------------------------------------------------------- Deribit


def test_deribit_book_summary_is_json_rpc_with_exact_numbers(deribit: FakeDeribit) -> None:
    with client(deribit) as http:
        response = http.get(BOOK_SUMMARY, params=BTC)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.text, parse_float=Decimal)
    assert {key: body[key] for key in ("jsonrpc", "testnet")} == {"jsonrpc": "2.0", "testnet": False}
    assert all(isinstance(body[key], int) for key in ("id", "usIn", "usOut", "usDiff"))
    assert body["usOut"] - body["usIn"] == body["usDiff"] > 0
    assert in_minute(body["usIn"] // 1000)
    rows = deribit.rows_for("BTC")
    assert texts(exact(response.text)["result"]) == texts(rows)  # digit for digit
    assert f'"result":{json_text(rows)},' in response.text  # and the very text
    for row in body["result"]:
        assert isinstance(row["open_interest"], Decimal) and isinstance(row["creation_timestamp"], int)
        assert in_minute(row["creation_timestamp"]) and row["creation_timestamp"] % 1000 >= 100
        assert isinstance(row["underlying_price"], Decimal) and isinstance(row["mark_price"], Decimal)
        for key in ("bid_price", "ask_price", "mid_price", "last", "high", "low"):
            assert row[key] is None or isinstance(row[key], Decimal)
        assert row["base_currency"] == "BTC" and row["quote_currency"] == "USD"
        assert row["underlying_index"].endswith(row["instrument_name"].split("-")[1])
    long = [row["open_interest"] for row in body["result"] if row["open_interest"]]
    assert all(len(value.as_tuple().digits) > 17 for value in long)
    assert all(Decimal(repr(float(value))) != value for value in long)  # a float would lose digits
    assert all(len(row["underlying_price"].as_tuple().digits) >= 19 for row in body["result"])
    assert any(row["open_interest"] == 0 for row in body["result"])
    assert any(row["bid_price"] is None for row in body["result"])
    assert any(row["last"] is None for row in body["result"])
    assert re.search(r'"open_interest":\d+\.\d{19},', response.text)


def test_deribit_names_inverse_and_linear(deribit: FakeDeribit) -> None:
    with client(deribit) as http:
        inverse = [
            row["instrument_name"]
            for currency in ("BTC", "ETH")
            for row in http.get(BOOK_SUMMARY, params={"currency": currency, "kind": "option"}).json()[
                "result"
            ]
        ]
        linear = http.get(BOOK_SUMMARY, params={"currency": "USDC", "kind": "option"}).json()["result"]
    assert all(INVERSE.fullmatch(name) for name in inverse)
    assert all(LINEAR.fullmatch(row["instrument_name"]) for row in linear)
    assert {row["base_currency"] for row in linear} == {"SOL", "XRP"}
    assert all(row["quote_currency"] == "USDC" and row["underlying_index"] == "index_price" for row in linear)
    strikes = {LINEAR.fullmatch(row["instrument_name"])["strike"] for row in linear}  # type: ignore[index]
    assert {"0d625", "187d5", "190"} <= strikes


def test_deribit_instruments_list_what_the_summary_serves(deribit: FakeDeribit) -> None:
    with client(deribit) as http:
        for currency in deribit.scopes():
            params = {"currency": currency, "kind": "option", "expired": "false"}
            response = http.get(DERIBIT_INSTRUMENTS, params=params)
            assert response.status_code == 200
            listed = json.loads(response.text, parse_float=Decimal)["result"]
            assert texts(exact(response.text)["result"]) == texts(deribit.instruments_for(currency))
            summary = http.get(BOOK_SUMMARY, params={"currency": currency, "kind": "option"}).json()["result"]
            assert [row["instrument_name"] for row in listed] == [row["instrument_name"] for row in summary]
            for row in listed:
                name = row["instrument_name"]
                assert row["kind"] == "option" and row["is_active"] is True and row["state"] == "open"
                assert row["strike"] == Decimal(name.split("-")[2].replace("d", "."))
                assert row["option_type"] == {"C": "call", "P": "put"}[name[-1]]
                assert (
                    at_eight(row["expiration_timestamp"])
                    and row["creation_timestamp"] < row["expiration_timestamp"]
                )
                assert row["instrument_type"] == ("linear" if "_USDC" in name else "reversed")
                assert row["settlement_currency"] == ("USDC" if "_USDC" in name else currency)
                assert isinstance(row["contract_size"], Decimal) and row["settlement_period"] in (
                    "week",
                    "month",
                )
        everything = http.get(DERIBIT_INSTRUMENTS, params={"currency": "any", "kind": "option"}).json()[
            "result"
        ]
        assert len(everything) == sum(len(deribit.instruments_for(c)) for c in deribit.scopes())
        expired = http.get(DERIBIT_INSTRUMENTS, params={**BTC, "expired": "true"}).json()
        assert expired["result"] == []


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (BOOK_SUMMARY, {"currency": "DOGE", "kind": "option"}, 400, -32602),
        (BOOK_SUMMARY, {"kind": "option"}, 400, -32602),
        (BOOK_SUMMARY, {"currency": "BTC", "kind": "options"}, 400, -32602),
        (DERIBIT_INSTRUMENTS, {"currency": "BTC", "kind": "option", "expired": "no"}, 400, -32602),
        ("/api/v2/public/get_nothing", {}, 400, -32601),
    ],
)
def test_deribit_errors_are_json_rpc_errors(
    deribit: FakeDeribit, path: str, params: dict[str, str], status: int, code: int
) -> None:
    with client(deribit) as http:
        response = http.get(path, params={**params, "id": "42"})
    assert response.status_code == status
    body = response.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 42 and "result" not in body
    assert body["error"]["code"] == code
    assert isinstance(body["usIn"], int) and body["usOut"] - body["usIn"] == body["usDiff"]
    if code == -32602:
        assert body["error"]["message"] == "Invalid params" and "param" in body["error"]["data"]


def test_deribit_currencies_without_options_and_other_kinds_are_empty(deribit: FakeDeribit) -> None:
    with client(deribit) as http:
        assert http.get(BOOK_SUMMARY, params={"currency": "USDT", "kind": "option"}).json()["result"] == []
        assert http.get(BOOK_SUMMARY, params={"currency": "BTC", "kind": "future"}).json()["result"] == []
        everything = http.get(BOOK_SUMMARY, params={"currency": "BTC"}).json()["result"]
    assert len(everything) == len(deribit.rows_for("BTC")) > 0


@pytest.mark.parametrize("status", [429, 400])
def test_deribit_rate_limit_answers_10028_and_ends_the_session(clock: Clock, status: int) -> None:
    with FakeDeribit(minute_ms=MINUTE, rate_limit=5, rate_limit_status=status, clock=clock) as fake:
        with client(fake) as http:
            assert [http.get(BOOK_SUMMARY, params=BTC).status_code for _ in range(5)] == [200] * 5
            refused = http.get(BOOK_SUMMARY, params=BTC)
            clock.now += 0.5
            assert http.get(BOOK_SUMMARY, params=BTC).status_code == status
            clock.now += 0.6
            assert http.get(BOOK_SUMMARY, params=BTC).status_code == 200
        assert fake.server_errors == []
    assert refused.status_code == status
    assert refused.headers["connection"] == "close"
    assert refused.json()["error"] == {"code": 10028, "message": "too_many_requests"}
    assert fake.count_status(status) == 2


def test_deribit_instruments_have_their_own_limit(clock: Clock) -> None:
    with FakeDeribit(minute_ms=MINUTE, instruments_rate_limit=1, clock=clock) as fake, client(fake) as http:
        listing = {**BTC, "expired": "false"}
        assert [http.get(DERIBIT_INSTRUMENTS, params=listing).status_code for _ in range(2)] == [200, 429]
        assert http.get(BOOK_SUMMARY, params=BTC).status_code == 200
        clock.now += 1.0
        assert http.get(DERIBIT_INSTRUMENTS, params=listing).status_code == 200


@pytest.mark.parametrize(
    ("fault", "status", "code", "message"),
    [
        (fake_deribit.too_many_requests(), 429, 10028, "too_many_requests"),
        (fake_deribit.system_maintenance(), 503, 11051, "system_maintenance"),
        (fake_deribit.temporarily_unavailable(), 503, 13028, "temporarily_unavailable"),
        (fake_deribit.too_many_requests(status=400), 400, 10028, "too_many_requests"),
    ],
)
def test_deribit_error_helpers(
    deribit: FakeDeribit, fault: Fault, status: int, code: int, message: str
) -> None:
    deribit.inject(fault, currency="ETH")
    with client(deribit) as http:
        assert http.get(BOOK_SUMMARY, params=BTC).status_code == 200
        response = http.get(BOOK_SUMMARY, params={"currency": "ETH", "kind": "option"})
        assert http.get(BOOK_SUMMARY, params={"currency": "ETH", "kind": "option"}).status_code == 200
    assert response.status_code == status
    body = response.json()
    assert body["error"] == {"code": code, "message": message}
    assert body["jsonrpc"] == "2.0" and {"usIn", "usOut", "usDiff"} <= set(body)


# ------------------------------------------------------------------------------------------- OKX


def test_okx_open_interest_is_all_strings_with_exact_coin(okx: FakeOkx) -> None:
    with client(okx) as http:
        response = http.get(OPEN_INTEREST, params=BTC_USD)
        listing = http.get(OKX_INSTRUMENTS, params=BTC_USD).json()["data"]
    assert response.status_code == 200
    body = response.json()
    assert (body["code"], body["msg"]) == ("0", "")
    assert body["data"] == okx.rows_for("BTC-USD")
    ct_val = {row["instId"]: Decimal(row["ctVal"]) for row in listing}
    assert set(ct_val.values()) == {Decimal("0.01")}
    for row in body["data"]:
        assert set(row) == {"instType", "instId", "oi", "oiCcy", "oiUsd", "ts"}
        assert all(isinstance(value, str) for value in row.values())
        assert row["instType"] == "OPTION" and OKX_ID.fullmatch(row["instId"])
        assert Decimal(row["oiCcy"]) == Decimal(row["oi"]) * ct_val[row["instId"]]
        assert re.fullmatch(r"\d+", row["oi"]) and in_minute(row["ts"])
    assert len({row["ts"] for row in body["data"]}) > 1  # per row
    assert any(row["oi"] == "0" for row in body["data"])
    assert any(re.fullmatch(r"\d+\.\d{8,}", row["oiUsd"]) for row in body["data"])
    eth = okx.rows_for("ETH-USD")
    assert all(Decimal(row["oiCcy"]) == Decimal(row["oi"]) * Decimal("0.1") for row in eth)


def test_okx_instruments_and_underlying(okx: FakeOkx) -> None:
    with client(okx) as http:
        underlying = http.get(UNDERLYING, params={"instType": "OPTION"}).json()
        for family in okx.scopes():
            params = {"instType": "OPTION", "instFamily": family}
            listed = http.get(OKX_INSTRUMENTS, params=params).json()["data"]
            served = http.get(OPEN_INTEREST, params=params).json()["data"]
            assert listed == okx.instruments_for(family)
            assert [row["instId"] for row in listed] == [row["instId"] for row in served]
            for row in listed:
                match = OKX_ID.fullmatch(row["instId"])
                assert match and all(isinstance(value, str) for value in row.values())
                assert (row["uly"], row["instFamily"], row["optType"], row["stk"]) == (
                    family,
                    family,
                    match["side"],
                    match["strike"],
                )
                assert at_eight(row["expTime"]) and int(row["listTime"]) < int(row["expTime"])
                expiry = datetime.fromtimestamp(int(row["expTime"]) / 1000, UTC).strftime("%y%m%d")
                assert expiry == match["expiry"] and row["state"] == "live"
                assert row["settleCcy"] == row["ctValCcy"] == family.split("-")[0] and row["ctMult"] == "1"
        one = http.get(OPEN_INTEREST, params={**BTC_USD, "instId": okx.rows_for("BTC-USD")[7]["instId"]})
    assert underlying == {"code": "0", "msg": "", "data": [["BTC-USD", "ETH-USD"]]}
    assert one.json()["data"] == [okx.rows_for("BTC-USD")[7]]


@pytest.mark.parametrize(
    ("params", "code", "msg"),
    [
        ({"instType": "OPTION", "instFamily": "SOL-USD"}, "51000", "Parameter instFamily error"),
        ({"instType": "OPTION"}, "50014", "Parameter instFamily can not be empty."),
        ({"instFamily": "BTC-USD"}, "50014", "Parameter instType can not be empty."),
        ({"instType": "OPTIONS", "instFamily": "BTC-USD"}, "51000", "Parameter instType error"),
        ({**BTC_USD, "instId": "BTC-USD-991231-1-C"}, "51001", "Instrument ID does not exist"),
    ],
)
def test_okx_bad_parameters(okx: FakeOkx, params: dict[str, str], code: str, msg: str) -> None:
    with client(okx) as http:
        response = http.get(OPEN_INTEREST, params=params)
    assert response.status_code == 400
    assert response.json() == {"code": code, "msg": msg, "data": []}


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        (fake_okx.too_many_requests(), 429, "50011"),
        (fake_okx.rate_limit_reached(), 200, "50011"),
        (fake_okx.systems_busy(), 429, "50013"),
        (fake_okx.service_unavailable(), 503, "50001"),
        (fake_okx.endpoint_timeout(), 400, "50004"),
    ],
)
def test_okx_error_helpers(okx: FakeOkx, fault: Fault, status: int, code: str) -> None:
    okx.inject(fault, instFamily="ETH-USD")
    with client(okx) as http:
        assert http.get(OPEN_INTEREST, params=BTC_USD).json()["code"] == "0"
        response = http.get(OPEN_INTEREST, params={"instType": "OPTION", "instFamily": "ETH-USD"})
    assert response.status_code == status
    body = response.json()
    assert body["code"] == code and body["data"] == [] and isinstance(body["msg"], str) and body["msg"]


@pytest.mark.parametrize(("status", "msg"), [(429, "Too Many Requests"), (200, fake_okx.RATE_LIMIT_REACHED)])
def test_okx_rate_limit_is_20_per_2_seconds_per_family(clock: Clock, status: int, msg: str) -> None:
    eth = {"instType": "OPTION", "instFamily": "ETH-USD"}
    with FakeOkx(minute_ms=MINUTE, rate_limit=LIMIT, rate_limit_status=status, clock=clock) as fake:
        with client(fake) as http:
            assert [http.get(OPEN_INTEREST, params=BTC_USD).json()["code"] for _ in range(20)] == ["0"] * 20
            refused = http.get(OPEN_INTEREST, params=BTC_USD)
            assert http.get(OPEN_INTEREST, params=eth).json()["code"] == "0"  # another family
            assert http.get(OKX_INSTRUMENTS, params=BTC_USD).json()["code"] == "0"  # another path
            clock.now += 2.0
            assert http.get(OPEN_INTEREST, params=BTC_USD).json()["code"] == "0"
        assert fake.server_errors == []
    assert refused.status_code == status
    assert refused.json() == {"code": "50011", "msg": msg, "data": []}


# ------------------------------------------------------------------------------------------- Bybit


def test_bybit_tickers_envelope_and_strings(bybit: FakeBybit) -> None:
    with client(bybit) as http:
        response = http.get(TICKERS, params=BTC_COIN)
    assert response.status_code == 200
    body = response.json()
    assert (body["retCode"], body["retMsg"], body["retExtInfo"]) == (0, "OK", {})
    assert isinstance(body["retCode"], int) and isinstance(body["time"], int)
    assert in_minute(body["time"]) and body["time"] % 1000 >= 100
    assert body["result"]["category"] == "option"
    rows = body["result"]["list"]
    assert rows == bybit.rows_for("BTC")
    fields = {
        "symbol", "openInterest", "markPrice", "indexPrice", "underlyingPrice", "markIv", "bid1Price",
        "bid1Size", "bid1Iv", "ask1Price", "ask1Size", "ask1Iv", "lastPrice", "highPrice24h", "lowPrice24h",
        "volume24h", "turnover24h", "totalVolume", "totalTurnover", "delta", "gamma", "vega", "theta",
        "predictedDeliveryPrice", "change24h",
    }  # fmt: skip
    for row in rows:
        assert set(row) == fields and all(isinstance(value, str) for value in row.values())
        assert BYBIT_SYMBOL.fullmatch(row["symbol"])
        assert all(Decimal(value) is not None for key, value in row.items() if key != "symbol")
    assert any(row["openInterest"] == "0" for row in rows)


def test_bybit_usdt_twins_share_everything_but_the_settle_coin(bybit: FakeBybit) -> None:
    with client(bybit) as http:
        rows = http.get(TICKERS, params=BTC_COIN).json()["result"]["list"]
    by_symbol = {row["symbol"]: row for row in rows}
    twins = [symbol for symbol in by_symbol if symbol.endswith("-USDT")]
    assert len(twins) >= 20
    assert all(len(symbol.split("-")) == 5 for symbol in twins)
    assert all(symbol.removesuffix("-USDT") in by_symbol for symbol in twins)
    differ = [
        s for s in twins if by_symbol[s]["openInterest"] != by_symbol[s.removesuffix("-USDT")]["openInterest"]
    ]
    assert len(differ) >= 10
    listed = {row["symbol"]: row for row in bybit.instruments_for("BTC")}
    for symbol in twins:
        usdt, usdc = listed[symbol], listed[symbol.removesuffix("-USDT")]
        assert (usdt["settleCoin"], usdt["quoteCoin"], usdc["settleCoin"]) == ("USDT", "USDT", "USDC")
        assert usdt["deliveryTime"] == usdc["deliveryTime"] and usdt["optionsType"] == usdc["optionsType"]
        assert usdt["displayName"] == symbol.removesuffix("-USDT").replace("-", "USDT-", 1)


@pytest.mark.parametrize("limit", [None, 100, 1000])
def test_bybit_instruments_info_pages_until_the_cursor_is_empty(bybit: FakeBybit, limit: int | None) -> None:
    pages: list[list[dict[str, Any]]] = []
    cursor = ""
    with client(bybit) as http:
        while True:
            params = {**BTC_COIN, **({} if limit is None else {"limit": str(limit)})}
            body = http.get(
                INSTRUMENTS_INFO, params={**params, **({"cursor": cursor} if cursor else {})}
            ).json()
            assert body["retCode"] == 0 and body["result"]["category"] == "option"
            pages.append(body["result"]["list"])
            cursor = body["result"]["nextPageCursor"]
            if not cursor:
                break
        tickers = http.get(TICKERS, params=BTC_COIN).json()["result"]["list"]
    assert all(len(page) == (limit or 500) for page in pages[:-1]) and 0 < len(pages[-1]) <= (limit or 500)
    rows = [row for page in pages for row in page]
    assert rows == bybit.instruments_for("BTC")
    assert [row["symbol"] for row in rows] == [row["symbol"] for row in tickers]
    assert len(pages) == math.ceil(len(rows) / (limit or 500))
    for row in rows:
        assert row["optionsType"] == ("Call" if row["symbol"].split("-")[3] == "C" else "Put")
        assert row["status"] == "Trading" and row["baseCoin"] == "BTC" and at_eight(row["deliveryTime"])
        assert set(row["priceFilter"]) == {"minPrice", "maxPrice", "tickSize"}
        assert set(row["lotSizeFilter"]) == {"maxOrderQty", "minOrderQty", "qtyStep"}


def test_bybit_listing_defaults_to_btc_and_is_empty_for_other_coins(bybit: FakeBybit) -> None:
    with client(bybit) as http:
        default = http.get(INSTRUMENTS_INFO, params={"category": "option", "limit": "1000"}).json()
        xrp = http.get(INSTRUMENTS_INFO, params={"category": "option", "baseCoin": "XRP"}).json()
        expiry = bybit.rows_for("BTC")[0]["symbol"].split("-")[1]
        one_expiry = http.get(TICKERS, params={**BTC_COIN, "expDate": expiry})
    assert default["result"]["list"] == bybit.instruments_for("BTC")
    assert (xrp["retCode"], xrp["result"]["list"], xrp["result"]["nextPageCursor"]) == (0, [], "")
    expiries = {row["symbol"].split("-")[1] for row in one_expiry.json()["result"]["list"]}
    assert expiries == {expiry}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        (TICKERS, {"category": "option"}),
        (TICKERS, {"category": "option", "baseCoin": "XRP"}),
        (TICKERS, {"category": "linear", "baseCoin": "BTC"}),
        (TICKERS, {"category": "option", "symbol": "BTC-1JAN99-1-C"}),
        (INSTRUMENTS_INFO, {**BTC_COIN, "limit": "1001"}),
        (INSTRUMENTS_INFO, {**BTC_COIN, "limit": "0"}),
        (INSTRUMENTS_INFO, {**BTC_COIN, "cursor": "not-a-cursor"}),
    ],
)
def test_bybit_params_errors_are_10001_on_http_200(
    bybit: FakeBybit, path: str, params: dict[str, str]
) -> None:
    with client(bybit) as http:
        response = http.get(path, params=params)
    assert response.status_code == 200
    body = response.json()
    assert (body["retCode"], body["retMsg"], body["result"]) == (10001, "params error", {})
    assert isinstance(body["time"], int)


def test_bybit_one_symbol(bybit: FakeBybit) -> None:
    row = bybit.rows_for("ETH")[5]
    with client(bybit) as http:
        body = http.get(TICKERS, params={"category": "option", "symbol": row["symbol"]}).json()
    assert body["result"]["list"] == [row]


def test_bybit_limit_headers_count_the_second(clock: Clock) -> None:
    with FakeBybit(minute_ms=MINUTE, bapi_limit=10, clock=clock) as fake, client(fake) as http:
        first, second = (http.get(TICKERS, params=BTC_COIN) for _ in range(2))
        clock.now += 1.0
        later = http.get(TICKERS, params=BTC_COIN)
    assert [r.headers["X-Bapi-Limit"] for r in (first, second, later)] == ["10"] * 3
    assert [r.headers["X-Bapi-Limit-Status"] for r in (first, second, later)] == ["9", "8", "9"]
    reset = int(first.headers["X-Bapi-Limit-Reset-Timestamp"])
    assert (
        reset == (int(T0) + 1) * 1000 and int(later.headers["X-Bapi-Limit-Reset-Timestamp"]) == reset + 1000
    )


def test_bybit_too_many_visits_is_10006_on_http_200(bybit: FakeBybit) -> None:
    bybit.inject(fake_bybit.too_many_visits(), baseCoin="ETH")
    with client(bybit) as http:
        response = http.get(TICKERS, params={"category": "option", "baseCoin": "ETH"})
        again = http.get(TICKERS, params={"category": "option", "baseCoin": "ETH"})
    assert response.status_code == 200
    assert (response.json()["retCode"], response.json()["retMsg"]) == (10006, "Too many visits!")
    assert response.headers.get_list("X-Bapi-Limit-Status") == ["0"]
    assert again.json()["retCode"] == 0


def test_bybit_ip_limit_bans_with_a_plain_text_403(clock: Clock) -> None:
    with FakeBybit(minute_ms=MINUTE, ip_limit=3, clock=clock) as fake, client(fake) as http:
        statuses = [http.get(TICKERS, params=BTC_COIN).status_code for _ in range(3)]
        clock.now += 4.0
        banned = http.get(TICKERS, params=BTC_COIN)
        clock.now += 10.0  # the 5 s window is long gone, the ban is not
        still = http.get(INSTRUMENTS_INFO, params=BTC_COIN)
        clock.now += 590.0
        free = http.get(TICKERS, params=BTC_COIN)
        assert fake.banned_until is None
    assert statuses == [200, 200, 200]
    for response in (banned, still):
        assert response.status_code == 403
        assert response.text == "access too frequent"
        assert response.headers["content-type"].startswith("text/plain")
        assert "X-Bapi-Limit" not in response.headers
        with pytest.raises(json.JSONDecodeError):
            json.loads(response.text)
    assert free.status_code == 200 and free.json()["retCode"] == 0


def test_bybit_ban_on_the_wall_clock_lifts_by_itself() -> None:
    with FakeBybit(minute_ms=MINUTE, ip_limit=2, ban_s=0.3) as fake, client(fake) as http:
        statuses = [http.get(TICKERS, params=BTC_COIN).status_code for _ in range(4)]
        time.sleep(0.35)
        assert http.get(TICKERS, params=BTC_COIN).status_code == 200
    assert statuses == [200, 200, 403, 403]


# ------------------------------------------------------------------------------------------- shared


@dataclass
class Venue:
    """One fake (made with the minute pinned) and its open-interest call for one scope."""

    make: type[FakeDeribit] | type[FakeOkx] | type[FakeBybit]
    path: str
    params: dict[str, str]
    scope_param: str  # the query parameter naming the scope
    name_key: str  # the row field naming the option
    oi_key: str  # the row field holding its open interest
    fake: FakeVenue[Any] = field(init=False)

    def __post_init__(self) -> None:
        self.fake = self.make(minute_ms=MINUTE)

    @property
    def scope(self) -> str:
        return self.params[self.scope_param]


@pytest.fixture(params=["deribit", "okx", "bybit"])
def venue(request: pytest.FixtureRequest) -> Iterator[Venue]:
    chosen = {
        "deribit": lambda: Venue(
            FakeDeribit, BOOK_SUMMARY, BTC, "currency", "instrument_name", "open_interest"
        ),
        "okx": lambda: Venue(FakeOkx, OPEN_INTEREST, BTC_USD, "instFamily", "instId", "oi"),
        "bybit": lambda: Venue(FakeBybit, TICKERS, BTC_COIN, "baseCoin", "symbol", "openInterest"),
    }[request.param]()
    with chosen.fake:
        yield chosen
    assert chosen.fake.server_errors == []


def rows_of(body: Any) -> list[Any]:
    """The rows inside any of the three envelopes."""
    if "result" in body and isinstance(body["result"], list):
        return list(body["result"])
    if "data" in body:
        return list(body["data"])
    return list(body["result"]["list"])


def test_values_are_fixed_per_minute_and_move_between_minutes(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    with client(fake) as http:
        first = texts(rows_of(exact(http.get(path, params=params).text)))
        assert (
            texts(rows_of(exact(http.get(path, params=params).text)))
            == first
            == texts(fake.rows_for(venue.scope))
        )
        fake.minute_ms = MINUTE + 60_000
        later = texts(rows_of(exact(http.get(path, params=params).text)))
    assert (
        texts(venue.make(minute_ms=MINUTE).rows_for(venue.scope)) == first
    )  # another instance, the same values
    assert later == texts(fake.rows_for(venue.scope, MINUTE + 60_000)) != first
    assert [row[venue.name_key] for row in later] == [row[venue.name_key] for row in first]
    moved = sum(row[venue.oi_key] != old[venue.oi_key] for row, old in zip(later, first, strict=True))
    assert moved > len(first) // 2


def test_the_minute_follows_the_wall_clock_unless_pinned(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    fake.minute_ms = None
    before = int(time.time() // 60) * 60_000
    with client(fake) as http:
        body = http.get(path, params=params).json()
    after = int(time.time() // 60) * 60_000
    if isinstance(fake, FakeDeribit):
        stamp = int(body["result"][0]["creation_timestamp"])
    elif isinstance(fake, FakeOkx):
        stamp = int(body["data"][0]["ts"])
    else:
        stamp = int(body["time"])
    assert any(in_minute(stamp, minute) for minute in {before, after})


def test_faults_by_path_and_params(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    key, value = venue.scope_param, venue.scope
    fake.inject(Fault(status=502), times=2, **{key: value})
    fake.inject(Fault(status=500), path=ANY_PATH, times=None, **{key: "none-such"})
    fake.inject(html_page(503), path="/elsewhere")
    with client(fake) as http:
        statuses = [http.get(path, params=params).status_code for _ in range(3)]
        elsewhere = http.get("/elsewhere")
        unmatched = http.get(path, params={**params, key: "none-such"})
        fake.clear_faults()
        cleared = http.get(path, params={**params, key: "none-such"})
    assert statuses == [502, 502, 200]
    assert elsewhere.status_code == 503 and elsewhere.headers["content-type"].startswith("text/html")
    assert unmatched.status_code == 500 and cleared.status_code != 500
    assert [request.status for request in fake.requests_to(path)][:3] == [502, 502, 200]
    assert fake.requests_to(path)[0].params == params
    with pytest.raises(ValueError):
        fake.inject(Fault(), times=0)


def test_fault_bodies_headers_and_extra_rows(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    extra: dict[str, object] = {"symbol": "nonsense", "open_interest": None}
    fake.inject(Fault(body='{"truncated":'))
    fake.inject(Fault(status=418, json_body={"anything": Decimal("1.50")}, headers={"Retry-After": "7"}))
    fake.inject(Fault(extra_rows=(extra,)))
    fake.inject(Fault(body="Service Unavailable", status=503))
    with client(fake) as http:
        truncated, teapot, extended, plain = (http.get(path, params=params) for _ in range(4))
        normal = http.get(path, params=params)
    assert truncated.status_code == 200 and truncated.text == '{"truncated":'
    assert truncated.headers["content-type"] == "application/json"
    assert (teapot.status_code, teapot.text, teapot.headers["Retry-After"]) == (418, '{"anything":1.50}', "7")
    assert rows_of(extended.json())[-1] == extra
    assert rows_of(extended.json())[:-1] == rows_of(normal.json())
    assert plain.status_code == 503 and plain.headers["content-type"].startswith("text/plain")


def test_delays_drips_and_drops(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    fake.inject(Fault(delay_s=0.3))
    fake.inject(Fault(json_body={"a": 1}, drip_s=0.03))
    fake.inject(Fault(drop_connection=True))
    with client(fake) as http:
        with pytest.raises(httpx.TimeoutException):
            http.get(path, params=params, timeout=0.05)
        started = time.monotonic()
        dripped = http.get(path, params=params)
        dripped_s = time.monotonic() - started
        with pytest.raises(httpx.TransportError):
            http.get(path, params=params)
        assert http.get(path, params=params).status_code == 200
        fake.delay_s = 0.1  # benchmarks: 100 ms on every answer
        started = time.monotonic()
        assert http.get(path, params=params).status_code == 200
        assert time.monotonic() - started >= 0.1
    assert dripped.json() == {"a": 1} and dripped_s >= 6 * 0.03
    assert fake.count_status(DROPPED) == 1


def test_answers_go_out_together(venue: Venue) -> None:
    fake, path, params = venue.fake, venue.path, venue.params
    fake.delay_s = 0.2
    statuses: list[int] = []

    def call() -> None:
        with client(fake) as http:
            statuses.append(http.get(path, params=params).status_code)

    threads = [threading.Thread(target=call) for _ in range(4)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 4 and time.monotonic() - started < 0.8
    assert fake.max_in_flight == 4


def test_stop_hangs_up_and_base_url_needs_a_running_server() -> None:
    fake = FakeOkx(minute_ms=MINUTE)
    with pytest.raises(RuntimeError):
        _ = fake.base_url
    with fake, client(fake) as http:
        assert http.get(UNDERLYING, params={"instType": "OPTION"}).status_code == 200
        fake.stop()
        with pytest.raises(httpx.TransportError):
            http.get(UNDERLYING, params={"instType": "OPTION"})
    fake.stop()  # twice is fine


@pytest.mark.parametrize(
    ("module", "path", "params"),
    [("tests.fake_deribit", BOOK_SUMMARY, BTC), ("tests.fake_okx", UNDERLYING, {"instType": "OPTION"}),
     ("tests.fake_bybit", TICKERS, BTC_COIN), ("tests.fake_exchange", "/eapi/v1/exchangeInfo", {})],
)  # fmt: skip
def test_runnable_by_hand(module: str, path: str, params: dict[str, str]) -> None:
    command = [sys.executable, "-m", module, "--port", "0", "--delay-s", "0.01"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            base_url = process.stdout.readline().strip()
            assert re.fullmatch(r"http://127\.0\.0\.1:\d+", base_url)
            assert httpx.get(base_url + path, params=params, timeout=5.0).status_code == 200
            process.send_signal(signal.SIGINT)  # Ctrl-C
            assert process.wait(timeout=10) == 0
        finally:
            if process.poll() is None:
                process.kill()
