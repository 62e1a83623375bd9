"""Redraw the README's pictures: the collector stores four hours of the fake exchange, then `plot` draws them.

    .venv/bin/python docs/pictures.py

It uses a throwaway PostgreSQL, as the tests do (or a database of its own on BENCH_DATABASE_URL's server).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks._support import database  # noqa: E402
from collector.cli import main as oi_collector  # noqa: E402
from collector.config import (  # noqa: E402
    BinanceSettings,
    DatabaseSettings,
    Settings,
    SpoolSettings,
    VenuesSettings,
)
from collector.cycle import collect_once  # noqa: E402
from collector.migrate import migrate  # noqa: E402
from collector.sink.postgres import PostgresSink, make_engine  # noqa: E402
from collector.sink.spool import Spool  # noqa: E402
from collector.sink.store import Store  # noqa: E402
from collector.venues.gate import ExchangeGate  # noqa: E402
from tests.fake_exchange import FakeExchange  # noqa: E402

MINUTES = 240
SYMBOL = "BTC-251226-105000-C"


def collect(settings: Settings, fake: FakeExchange) -> None:
    engine = make_engine(settings.database.url)
    store = Store(PostgresSink(engine), Spool(settings.spool.dir, settings.spool.max_bytes))
    gate = ExchangeGate(settings.spool.dir / "exchange-ban.json")
    first = int(time.time() // 60 * 60_000) - MINUTES * 60_000
    for minute in range(MINUTES):
        fake.minute_ms = first + minute * 60_000
        assert asyncio.run(collect_once(settings, store, gate)).ok
    engine.dispose()


def main() -> None:
    for name in [name for name in os.environ if name.startswith("OI_")]:  # only our settings below count
        del os.environ[name]
    with (
        FakeExchange({"BTC": ["251226", "260102"]}) as fake,
        TemporaryDirectory() as spool,
        database("oi_docs") as url,
    ):
        settings = Settings(
            binance=BinanceSettings(base_url=fake.base_url, underlyings=("BTC",), expiries=("251226",)),
            venues=VenuesSettings(enabled=("binance",)),
            database=DatabaseSettings(url=url),
            spool=SpoolSettings(dir=Path(spool)),
        )
        migrate(settings)
        collect(settings, fake)
        os.environ["OI_DATABASE_URL"] = settings.database.url
        for args in (
            ["--underlying", "BTC", "--expiry", "251226", "--out", str(REPO / "docs" / "oi-by-strike.png")],
            ["--history", SYMBOL, "--out", str(REPO / "docs" / "oi-history.png")],
        ):
            assert oi_collector(["plot", *args]) == 0


if __name__ == "__main__":
    main()
