"""Per venue: requests per full snapshot, rows stored, and the time of one ``oi-collector once`` with 100 ms
added to every answer.

    python benchmarks/bench_venues.py

Each venue's fake (its default universe), one venue per run, then all four in one run. Two times each: the
cycle itself (in process, median of three), and the whole ``oi-collector once`` command (a new process: start,
configuration, the cycle, the write; median of three). Baseline (same run): each venue with one request in
flight, its scopes fetched one after another. Not part of the tests.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

from _support import REPO, database, migrated

from collector.config import (
    BinanceSettings,
    BybitSettings,
    DatabaseSettings,
    DeribitSettings,
    OkxSettings,
    Settings,
    SpoolSettings,
    VenuesSettings,
)
from collector.cycle import CycleReport, collect_once
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from collector.venues import Gates
from tests.fake_bybit import FakeBybit
from tests.fake_deribit import FakeDeribit
from tests.fake_exchange import FakeExchange, current_minute_ms
from tests.fake_okx import FakeOkx

DELAY_S = 0.1
RUNS = 3
VENUES = ("binance", "deribit", "okx", "bybit")


def one_cycle(settings: Settings, store: Store) -> CycleReport:
    report = asyncio.run(collect_once(settings, store, Gates(), time.time() + 60))
    assert report.ok, report.summary()
    return report


def median_time(run: Callable[[], object], advance: Callable[[int], None]) -> float:
    times = []
    for number in range(RUNS):
        advance(number)
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def once_command(settings: Settings) -> None:
    """``oi-collector once`` in a new process, as a user runs it."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("OI_")}
    env.update(
        OI_VENUES_ENABLED=",".join(settings.venues.enabled),
        OI_BINANCE_BASE_URL=settings.binance.base_url,
        OI_DERIBIT_BASE_URL=settings.deribit.base_url,
        OI_OKX_BASE_URL=settings.okx.base_url,
        OI_BYBIT_BASE_URL=settings.bybit.base_url,
        OI_EXCHANGE_MAX_IN_FLIGHT=str(settings.exchange.max_in_flight),
        OI_DATABASE_URL=settings.database.url,
        OI_SPOOL_DIR=str(settings.spool.dir),
    )
    command = [str(Path(sys.executable).parent / "oi-collector"), "once"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@contextmanager
def fakes() -> Iterator[dict[str, Any]]:
    with ExitStack() as stack:
        yield {
            "binance": stack.enter_context(FakeExchange(delay_s=DELAY_S)),
            "deribit": stack.enter_context(FakeDeribit(delay_s=DELAY_S)),
            "okx": stack.enter_context(FakeOkx(delay_s=DELAY_S)),
            "bybit": stack.enter_context(FakeBybit(delay_s=DELAY_S)),
        }


def main() -> None:
    with fakes() as fake, database("oi_bench_venues") as url, TemporaryDirectory() as tmp:
        migrated(url)
        engine = make_engine(url)
        store = Store(PostgresSink(engine), Spool(Path(tmp), 10**9))
        base = Settings(
            binance=BinanceSettings(base_url=fake["binance"].base_url),
            deribit=DeribitSettings(base_url=fake["deribit"].base_url),
            okx=OkxSettings(base_url=fake["okx"].base_url),
            bybit=BybitSettings(base_url=fake["bybit"].base_url),
            database=DatabaseSettings(url=url.replace("postgresql://", "postgresql+psycopg://", 1)),
            spool=SpoolSettings(dir=Path(tmp)),
        )
        minute = current_minute_ms() - 120 * 60_000

        runs = iter(range(10**6))

        def advance(_: int) -> None:  # a new Binance minute each run, so every run writes every row
            fake["binance"].minute_ms = minute + next(runs) * 60_000
            for venue in VENUES:
                fake[venue].requests.clear()

        print(f"venues: {RUNS} runs each, median; {DELAY_S * 1000:.0f} ms added to every answer")
        header = f"{'venue':8} {'requests':>8} {'rows':>6} {'cycle':>7} {'one at a time':>13} {'ratio':>5}"
        print(f"  {header} {'oi-collector once':>17}")
        for venue in (*VENUES, "all"):
            only = base if venue == "all" else replace(base, venues=VenuesSettings(enabled=(venue,)))
            sequential = replace(only, exchange=replace(only.exchange, max_in_flight=1))
            reports: list[CycleReport] = []
            ours = median_time(lambda: reports.append(one_cycle(only, store)), advance)  # noqa: B023
            requests = sum(len(fake[name].requests) for name in only.venues.enabled)
            slow = median_time(lambda: one_cycle(sequential, store), advance)  # noqa: B023
            command = median_time(lambda: once_command(only), advance)  # noqa: B023
            rows = reports[-1].rows_fetched
            figures = f"{requests:8d} {rows:6d} {ours:6.2f}s {slow:12.2f}s {slow / ours:5.1f}"
            print(f"  {venue:8} {figures} {command:16.2f}s")
        engine.dispose()


if __name__ == "__main__":
    main()
