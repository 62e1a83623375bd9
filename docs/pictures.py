"""Redraw the README's pictures: the collector stores four hours of the four venues' fakes (one BTC expiry
listed at each), then `plot` draws them.

    .venv/bin/python docs/pictures.py

It uses a throwaway PostgreSQL, as the tests do (or a database of its own on BENCH_DATABASE_URL's server).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._support import database  # noqa: E402
from collector.cli import main as oi_collector  # noqa: E402
from collector.config import (  # noqa: E402
    BinanceSettings,
    BybitSettings,
    DatabaseSettings,
    DeribitSettings,
    OkxSettings,
    Settings,
    SpoolSettings,
)
from collector.cycle import collect_once  # noqa: E402
from collector.migrate import migrate  # noqa: E402
from collector.sink.postgres import PostgresSink, make_engine  # noqa: E402
from collector.sink.spool import Spool  # noqa: E402
from collector.sink.store import Store  # noqa: E402
from collector.venues import Gates  # noqa: E402
from tests.fake_bybit import FakeBybit  # noqa: E402
from tests.fake_deribit import FakeDeribit  # noqa: E402
from tests.fake_exchange import FakeExchange  # noqa: E402
from tests.fake_http import FakeVenue, default_expiries, yymmdd  # noqa: E402
from tests.fake_okx import FakeOkx  # noqa: E402

MINUTES = 240
SYMBOL_STRIKE = "105000"


EXPIRY = default_expiries()[0]  # the next Friday: the pictures show a live expiry, whenever they are drawn
YYMMDD = yymmdd(EXPIRY)


def collect(settings: Settings, fakes: list[FakeExchange | FakeVenue]) -> None:  # type: ignore[type-arg]
    engine = make_engine(settings.database.url)
    store = Store(PostgresSink(engine), Spool(settings.spool.dir, settings.spool.max_bytes))
    gates = Gates(settings.spool.dir)
    first = int(time.time() // 60 * 60_000) - MINUTES * 60_000
    for minute in range(MINUTES):
        for fake in fakes:
            fake.minute_ms = first + minute * 60_000
        assert asyncio.run(collect_once(settings, store, gates)).ok
    engine.dispose()


def main() -> None:
    for name in [name for name in os.environ if name.startswith("OI_")]:  # only our settings below count
        del os.environ[name]
    with ExitStack() as stack:
        binance = stack.enter_context(FakeExchange({"BTC": [YYMMDD]}))
        deribit = stack.enter_context(FakeDeribit({"BTC": [EXPIRY]}))
        okx = stack.enter_context(FakeOkx({"BTC-USD": [EXPIRY]}))
        bybit = stack.enter_context(FakeBybit({"BTC": [EXPIRY]}))
        spool = stack.enter_context(TemporaryDirectory())
        url = stack.enter_context(database("oi_docs"))
        settings = Settings(
            binance=BinanceSettings(base_url=binance.base_url, underlyings=("BTC",), expiries=(YYMMDD,)),
            deribit=DeribitSettings(base_url=deribit.base_url, currencies=("BTC",)),
            okx=OkxSettings(base_url=okx.base_url, families=("BTC-USD",)),
            bybit=BybitSettings(base_url=bybit.base_url, base_coins=("BTC",)),
            database=DatabaseSettings(url=url.replace("postgresql://", "postgresql+psycopg://", 1)),
            spool=SpoolSettings(dir=Path(spool)),
        )
        migrate(settings)
        collect(settings, [binance, deribit, okx, bybit])
        os.environ["OI_DATABASE_URL"] = settings.database.url
        for args in (
            ["--underlying", "BTC", "--expiry", "next", "--out", str(REPO / "docs" / "oi-by-strike.png")],
            ["--history", f"BTC-{YYMMDD}-{SYMBOL_STRIKE}-C", "--out", str(REPO / "docs" / "oi-history.png")],
        ):
            assert oi_collector(["plot", *args]) == 0


if __name__ == "__main__":
    main()
