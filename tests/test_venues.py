"""Every venue at once, end to end through the CLI against the four fakes into a real PostgreSQL: every row
stored digit for digit as served, one request per scope, and a venue that is down, rate-limited, banned or
hostile costing only itself."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy.engine import make_url

from collector.config import Settings
from tests.conftest import StoredRow, cli_env, run_cli, stored_rows
from tests.fake_bybit import TICKERS, FakeBybit, access_too_frequent, bybit_error
from tests.fake_deribit import BOOK_SUMMARY, FakeDeribit
from tests.fake_exchange import OPEN_INTEREST as BINANCE_OPEN_INTEREST
from tests.fake_exchange import RECENT_MINUTE_MS, FakeExchange, html_page
from tests.fake_http import FakeVenue, Fault
from tests.fake_okx import OPEN_INTEREST as OKX_OPEN_INTEREST
from tests.fake_okx import FakeOkx, rate_limit_reached


@dataclass
class Fakes:
    binance: FakeExchange
    deribit: FakeDeribit
    okx: FakeOkx
    bybit: FakeBybit

    def env(self, settings: Settings, **extra: str) -> dict[str, str]:
        return cli_env(
            settings,
            OI_VENUES_ENABLED="binance,deribit,okx,bybit",
            OI_BINANCE_BASE_URL=self.binance.base_url,
            OI_BINANCE_UNDERLYINGS="BTC",
            OI_DERIBIT_BASE_URL=self.deribit.base_url,
            OI_OKX_BASE_URL=self.okx.base_url,
            OI_BYBIT_BASE_URL=self.bybit.base_url,
            **extra,
        )


@pytest.fixture
def fakes() -> Iterator[Fakes]:
    minute = int(time.time() // 60 * 60_000)
    with (
        FakeExchange({"BTC": ["251226", "260102"]}, minute_ms=RECENT_MINUTE_MS) as binance,
        FakeDeribit(minute_ms=minute) as deribit,
        FakeOkx(minute_ms=minute) as okx,
        FakeBybit(minute_ms=minute) as bybit,
    ):
        yield Fakes(binance, deribit, okx, bybit)
    for fake in (deribit, okx, bybit):
        assert fake.server_errors == []


def exact(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal)


def served_binance(fake: FakeExchange) -> dict[str, StoredRow]:
    return {
        row["symbol"]: (row["timestamp"], row["sumOpenInterest"], row["sumOpenInterestUsd"], None)
        for underlying, expiry in fake.pairs()
        for row in fake.rows_for(underlying, expiry)
    }


def served_deribit(fake: FakeDeribit) -> dict[str, StoredRow]:
    def text(value: object) -> str | None:
        return None if value is None else format(Decimal(str(value)), "f")

    return {
        row["instrument_name"]: (
            str(row["creation_timestamp"]),
            text(row["open_interest"]),
            None,
            text(row["underlying_price"]),
        )
        for currency in fake.scopes()
        for row in fake.rows_for(currency)
    }


def served_okx(fake: FakeOkx) -> dict[str, StoredRow]:
    return {
        row["instId"]: (row["ts"], row["oiCcy"], row["oiUsd"], None)
        for family in fake.scopes()
        for row in fake.rows_for(family)
    }


def served_bybit(fake: FakeBybit) -> dict[str, StoredRow]:
    """Asked of the fake over HTTP, as the collector asks: rows carry no time, the answer's ``time`` is it."""
    served: dict[str, StoredRow] = {}
    with httpx.Client(base_url=fake.base_url) as http:
        for coin in fake.scopes():
            answer = exact(http.get(TICKERS, params={"category": "option", "baseCoin": coin}).content)
            for row in answer["result"]["list"]:
                served[row["symbol"]] = (
                    str(answer["time"]),
                    row["openInterest"],
                    None,
                    row["underlyingPrice"],
                )
    return served


def served(fakes: Fakes, venue: str) -> dict[str, StoredRow]:
    match venue:
        case "binance":
            return served_binance(fakes.binance)
        case "deribit":
            return served_deribit(fakes.deribit)
        case "okx":
            return served_okx(fakes.okx)
        case _:
            return served_bybit(fakes.bybit)


VENUES = ("binance", "deribit", "okx", "bybit")
OPEN_INTEREST_PATHS = {
    "binance": BINANCE_OPEN_INTEREST,
    "deribit": BOOK_SUMMARY,
    "okx": OKX_OPEN_INTEREST,
    "bybit": TICKERS,
}


def fake_of(fakes: Fakes, venue: str) -> FakeVenue[Any] | FakeExchange:
    return getattr(fakes, venue)  # type: ignore[no-any-return]


def journal(url: str, venue: str) -> list[tuple[str, str, int | None, str | None]]:
    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(plain) as connection:
        return connection.execute(
            "SELECT scope, status, error_code, error_message FROM collection_runs WHERE venue = %s"
            " ORDER BY scope",
            (venue,),
        ).fetchall()


def test_every_venue_is_stored_digit_for_digit_with_one_request_per_scope(
    settings: Settings, fakes: Fakes
) -> None:
    result = run_cli("once", env=fakes.env(settings))
    assert result.returncode == 0, result.stderr
    url = settings.database.url
    for venue in VENUES:
        expected = served(fakes, venue)
        assert expected, venue
        assert stored_rows(url, venue) == expected, venue
    assert len(fakes.binance.requests_to(BINANCE_OPEN_INTEREST)) == len(fakes.binance.pairs())
    assert len(fakes.deribit.requests_to(BOOK_SUMMARY)) == 3  # BTC, ETH, USDC
    assert len(fakes.okx.requests_to(OKX_OPEN_INTEREST)) == 2  # BTC-USD, ETH-USD
    assert len(fakes.bybit.requests_to(TICKERS)) == 3 + 3  # BTC, ETH, SOL; and served_bybit's own three
    assert [scope for scope, *_ in journal(url, "okx")] == ["BTC-USD", "ETH-USD"]
    assert {status for _, status, *_ in journal(url, "bybit")} == {"ok"}


@pytest.mark.parametrize("down", VENUES)
def test_one_venue_down_costs_only_that_venue(settings: Settings, fakes: Fakes, down: str) -> None:
    fake_of(fakes, down).inject(html_page(502), path=OPEN_INTEREST_PATHS[down], times=None)
    result = run_cli("once", env=fakes.env(settings, OI_EXCHANGE_TIMEOUT_S="1"))
    assert result.returncode == 1
    summary = result.stderr.strip().splitlines()[-1]
    assert " ERROR " in summary and f"; FAILED: {down} " in summary  # the summary says which and why
    url = settings.database.url
    assert stored_rows(url, down) == {}
    assert {status for _, status, *_ in journal(url, down)} == {"failed"}
    for venue in VENUES:
        if venue != down:
            assert stored_rows(url, venue) == served(fakes, venue), venue


def test_an_okx_rate_limit_on_http_200_pauses_okx_and_its_rows_still_arrive(
    settings: Settings, fakes: Fakes
) -> None:
    fakes.okx.inject(rate_limit_reached(), instFamily="BTC-USD")
    result = run_cli("once", env=fakes.env(settings))
    assert result.returncode == 0, result.stderr
    assert "rate limited (HTTP 200)" in result.stderr
    assert stored_rows(settings.database.url, "okx") == served_okx(fakes.okx)
    assert len(fakes.okx.requests_to(OKX_OPEN_INTEREST)) == 3  # BTC-USD twice (paused, then again), ETH-USD


def test_a_bybit_403_bans_bybit_alone_for_ten_minutes_across_restarts(
    settings: Settings, fakes: Fakes
) -> None:
    fakes.bybit.inject(access_too_frequent(), times=None)
    first = run_cli("once", env=fakes.env(settings))
    assert first.returncode == 1
    assert "bybit banned this IP (HTTP 403)" in first.stderr
    ban = json.loads((settings.spool.dir / "bybit-ban.json").read_text())
    assert ban["banned_until"] >= datetime.now(UTC).timestamp() + 590  # at least 10 minutes
    asked = len(fakes.bybit.requests_to(TICKERS))
    second = run_cli("once", env=fakes.env(settings))  # a restart during the ban: nothing goes to Bybit
    assert second.returncode == 1
    assert len(fakes.bybit.requests_to(TICKERS)) == asked
    for venue in ("binance", "deribit", "okx"):
        assert stored_rows(settings.database.url, venue) == served(fakes, venue), venue


@pytest.mark.parametrize(
    ("fault", "error_code"),
    [
        (bybit_error(10001, "params error"), 10001),  # an error on HTTP 200
        (Fault(json_body={"retCode": 0, "retMsg": "OK", "result": {"list": []}}), None),  # no time
        (Fault(json_body={"retCode": 0, "retMsg": "OK", "result": {}, "time": 1}), None),  # no list
    ],
    ids=["retCode on 200", "no time", "no list"],
)
def test_a_bybit_answer_that_is_not_rows_fails_only_that_coin(
    settings: Settings, fakes: Fakes, fault: Fault, error_code: int | None
) -> None:
    fakes.bybit.inject(fault, baseCoin="ETH")
    result = run_cli("once", env=fakes.env(settings))
    assert result.returncode == 1
    runs = {scope: (status, code) for scope, status, code, _ in journal(settings.database.url, "bybit")}
    assert runs == {"BTC": ("ok", None), "ETH": ("failed", error_code), "SOL": ("ok", None)}
    stored = stored_rows(settings.database.url, "bybit")
    assert stored and not any(symbol.startswith("ETH-") for symbol in stored)
