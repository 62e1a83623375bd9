"""``oi-collector plot``: PNGs drawn from rows the collector stored from the fake exchange."""

from __future__ import annotations

import argparse
import asyncio
import socket
import struct
import time
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from sqlalchemy import Engine

from collector.cli import size_arg, time_arg
from collector.config import Settings
from collector.cycle import collect_once
from collector.plot import CALLS, PUTS, SHADES
from collector.records import Batch, OpenInterest
from collector.sink.postgres import PostgresSink, strike_book, symbol_history
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.conftest import cli_env, run_cli
from tests.fake_exchange import FakeExchange

SYMBOL = "BTC-251226-105000-C"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def minutes(settings: Settings, store: Store, gate: ExchangeGate, fake: FakeExchange) -> list[datetime]:
    """Six snapshots of BTC 251226, a minute apart, stored by the collector; their times."""
    fake.set_universe({"BTC": ["251226", "260102"]})
    first = int(time.time() // 60 * 60_000) - 10 * 60_000
    only_btc = Settings(
        exchange=settings.exchange, database=settings.database, spool=settings.spool, venues=settings.venues,
        binance=replace(settings.binance, underlyings=("BTC",), expiries=("251226",)),
    )  # fmt: skip
    stored = []
    for minute in range(6):
        fake.minute_ms = first + minute * 60_000
        assert asyncio.run(collect_once(only_btc, store, gate)).ok
        stored.append(datetime.fromtimestamp(fake.minute_ms / 1000, UTC))
    return stored


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the IHDR chunk, which a valid PNG has first, right after the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def pixels_of(colour: str, image: np.ndarray) -> int:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255
    return int((np.abs(image[:, :, :3] - rgb).max(axis=2) < 0.02).sum())


def test_strike_book_is_the_stored_snapshot_by_strike(
    engine: Engine, fake: FakeExchange, minutes: list
) -> None:
    book = strike_book(engine, "BTC", date(2025, 12, 26), minutes[2] + timedelta(seconds=30))
    assert book is not None
    assert book.snapshot == minutes[2]
    expected: dict[Decimal, list[Decimal]] = {}
    for row in fake.rows_for("BTC", "251226", int(minutes[2].timestamp() * 1000)):
        strike, side = row["symbol"].split("-")[2:]
        expected.setdefault(Decimal(strike), [Decimal(0), Decimal(0)])[side == "P"] = Decimal(
            row["sumOpenInterest"]
        )
    calls, puts = book.calls["binance"], book.puts["binance"]
    assert dict(zip(book.strikes, map(list, zip(calls, puts, strict=True)), strict=True)) == expected
    assert (set(book.calls), book.venue) == ({"binance"}, None)
    assert book.max_pain in book.strikes


def test_plot_by_strike_draws_calls_and_puts_into_a_png_of_the_size_asked(
    settings: Settings, minutes: list, tmp_path: Path
) -> None:
    out = tmp_path / "oi.png"
    args = ["--underlying", "btc", "--expiry", "251226", "--out", str(out), "--size", "1200x700"]
    result = run_cli("plot", *args, env=cli_env(settings))
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1200, 700)
    image = imread(out)
    assert image.shape[:2] == (700, 1200)
    assert pixels_of(CALLS, image) > 2_000  # bars of both colours, not an empty frame
    assert pixels_of(PUTS, image) > 2_000
    assert f"wrote {out} (1200 x 700 pixels)" in result.stderr


def test_plot_at_a_time_uses_the_snapshot_at_or_before_it(
    settings: Settings, minutes: list, tmp_path: Path
) -> None:
    out = tmp_path / "then.png"
    at = (minutes[0] + timedelta(seconds=59)).replace(tzinfo=None).isoformat()
    result = run_cli("plot", "--underlying", "BTC", "--expiry", "251226", "--at", at, "--out", str(out),
                     env=cli_env(settings))  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1600, 900)


def test_plot_history_draws_one_symbol_over_time(
    settings: Settings, engine: Engine, minutes: list, tmp_path: Path
) -> None:
    assert [ts for ts, _ in symbol_history(engine, SYMBOL, None)["binance"]] == minutes
    out = tmp_path / "history.png"
    result = run_cli("plot", "--history", SYMBOL, "--since", "1d", "--out", str(out), env=cli_env(settings))
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1600, 900)
    assert pixels_of(CALLS, imread(out)) > 500  # the line


def test_plot_with_nothing_stored_says_what_it_looked_for_and_writes_nothing(
    settings: Settings, minutes: list, tmp_path: Path
) -> None:
    out = tmp_path / "none.png"
    before = (minutes[0] - timedelta(minutes=1)).isoformat()
    result = run_cli("plot", "--underlying", "BTC", "--expiry", "251226", "--at", before, "--out", str(out),
                     env=cli_env(settings))  # fmt: skip
    assert result.returncode == 1
    assert "no stored snapshot of BTC 251226 at or before" in result.stderr
    result = run_cli("plot", "--history", "BTC-251226-1-C", "--out", str(out), env=cli_env(settings))
    assert result.returncode == 1
    assert "no stored open interest for BTC-251226-1-C" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args",
    [["--history", SYMBOL], ["--underlying", "BTC", "--expiry", "251226"]],
    ids=["history", "by strike"],
)
def test_plot_with_the_database_down_says_so_in_one_line(
    settings: Settings, tmp_path: Path, args: list
) -> None:
    with socket.socket() as closed:  # a port nobody listens on once this socket is closed
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    env = cli_env(settings, OI_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{port}/oi")
    result = run_cli("plot", *args, "--out", str(tmp_path / "x.png"), env=env)
    assert result.returncode == 1
    assert "database read failed on postgresql+psycopg://postgres@127.0.0.1" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--underlying", "BTC"], "needs --expiry"),
        (["--history", SYMBOL, "--at", "2025-12-20T08:00"], "--expiry and --at do not apply"),
        (["--underlying", "BTC", "--expiry", "251226", "--since", "1d"], "use --at, not --since"),
        (["--underlying", "BTC", "--expiry", "251399"], "not a real date"),
        (["--underlying", "BTC", "--expiry", "251226", "--size", "10x10"], "not a size"),
        (["--underlying", "BTC", "--expiry", "251226", "--at", "yesterday"], "not a time"),
    ],
)
def test_plot_arguments_that_cannot_work_exit_2_saying_why(
    settings: Settings, tmp_path: Path, args: list[str], message: str
) -> None:
    result = run_cli("plot", *args, "--out", str(tmp_path / "x.png"), env=cli_env(settings))
    assert result.returncode == 2
    assert message in result.stderr


def test_size_is_width_x_height_within_bounds() -> None:
    assert size_arg("1600x900") == (1600, 900)
    assert size_arg("800X600") == (800, 600)
    for bad in ("1600", "x900", "1600x", "-5x5", "199x900", "1600x8001", "16OOx900"):
        with pytest.raises(argparse.ArgumentTypeError):
            size_arg(bad)


def test_a_time_without_an_offset_is_utc() -> None:
    assert time_arg("2025-12-20T08:00") == datetime(2025, 12, 20, 8, 0, tzinfo=UTC)
    assert time_arg("2025-12-20T08:00Z") == datetime(2025, 12, 20, 8, 0, tzinfo=UTC)
    assert time_arg("2025-12-20T09:00+01:00") == datetime(
        2025, 12, 20, 9, 0, tzinfo=timezone(timedelta(hours=1))
    )


@pytest.fixture
def two_venues(sink: PostgresSink, minutes: list) -> list:
    """Deribit rows for the same expiry beside the fake Binance's, at the newest of its minutes."""
    at = minutes[-1] + timedelta(milliseconds=345)
    rows = [
        OpenInterest("deribit", f"BTC-26DEC25-{strike}-{side[0].upper()}", at, "BTC", date(2025, 12, 26),
                     Decimal(strike), side, Decimal(500), None, Decimal(97000), at)  # type: ignore[arg-type]
        for strike in (100_000, 105_000) for side in ("call", "put")
    ]  # fmt: skip
    sink.write(Batch([], rows))
    return minutes


def test_plot_by_strike_stacks_every_venue_unless_one_is_asked_for(
    settings: Settings, engine: Engine, two_venues: list, tmp_path: Path
) -> None:
    book = strike_book(engine, "BTC", date(2025, 12, 26), datetime.now(UTC))
    assert book is not None and set(book.calls) == {"binance", "deribit"}
    assert book.calls["deribit"][book.strikes.index(Decimal(100_000))] == 500
    deribit_calls, _ = SHADES["deribit"]
    drawn = {}
    for venue in (None, "binance", "deribit"):
        out = tmp_path / f"{venue}.png"
        chosen = [] if venue is None else ["--venue", venue]
        result = run_cli("plot", "--underlying", "BTC", "--expiry", "251226", *chosen, "--out", str(out),
                         env=cli_env(settings))  # fmt: skip
        assert result.returncode == 0, result.stderr
        drawn[venue] = imread(out)
    assert pixels_of(deribit_calls, drawn[None]) > 500 and pixels_of(CALLS, drawn[None]) > 500
    assert pixels_of(deribit_calls, drawn["binance"]) == 0
    assert pixels_of(deribit_calls, drawn["deribit"]) > 500 and pixels_of(CALLS, drawn["deribit"]) == 0


def test_history_of_a_symbol_is_per_venue(engine: Engine, two_venues: list) -> None:
    assert set(symbol_history(engine, "BTC-26DEC25-100000-C", None)) == {"deribit"}
    assert symbol_history(engine, "BTC-26DEC25-100000-C", None, "binance") == {}


def test_plot_next_draws_the_nearest_expiry_in_the_book(
    settings: Settings, minutes: list, tmp_path: Path
) -> None:
    out = tmp_path / "next.png"
    result = run_cli(
        "plot", "--underlying", "BTC", "--expiry", "next", "--out", str(out), env=cli_env(settings)
    )
    assert result.returncode == 0, result.stderr
    assert png_size(out) == (1600, 900)
    later = (datetime.now(UTC) + timedelta(days=1)).replace(tzinfo=None).isoformat()
    nothing = run_cli("plot", "--underlying", "BTC", "--expiry", "next", "--at", later, "--out", str(out),
                      env=cli_env(settings))  # fmt: skip
    assert nothing.returncode == 1 and "no stored snapshot of BTC next at or before" in nothing.stderr
