"""Per venue: requests per full snapshot, rows stored, and the time of one cycle with 100 ms added to every
answer.

    python benchmarks/bench_venues.py

Each venue's fake (its default universe), one venue per cycle, then all of them in one cycle. Baseline (same
run): each venue with one request in flight, its scopes fetched one after another. Not part of the tests.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from _support import database, migrated

from collector.config import (
    DatabaseSettings,
    DeribitSettings,
    ExchangeSettings,
    Settings,
    SpoolSettings,
    VenuesSettings,
)
from collector.cycle import CycleReport, collect_once
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from collector.venues import Gates
from tests.fake_deribit import BOOK_SUMMARY, FakeDeribit
from tests.fake_exchange import EXCHANGE_INFO, OPEN_INTEREST, FakeExchange, current_minute_ms

DELAY_S = 0.1
RUNS = 3


def one_cycle(settings: Settings, store: Store) -> CycleReport:
    report = asyncio.run(collect_once(settings, store, Gates(), time.time() + 60))
    assert report.ok, report.summary()
    return report


def measure(settings: Settings, store: Store, advance: Callable[[int], None]) -> tuple[float, CycleReport]:
    times, report = [], None
    for run in range(RUNS):
        advance(run)
        started = time.perf_counter()
        report = one_cycle(settings, store)
        times.append(time.perf_counter() - started)
    assert report is not None
    return statistics.median(times), report


def main() -> None:
    with ExitStack() as stack:
        url = stack.enter_context(database("oi_bench_venues"))
        tmp = stack.enter_context(TemporaryDirectory())
        binance = stack.enter_context(FakeExchange(delay_s=DELAY_S))
        deribit = stack.enter_context(FakeDeribit(delay_s=DELAY_S))
        migrated(url)
        engine = make_engine(url)
        store = Store(PostgresSink(engine), Spool(Path(tmp), 10**9))
        base = Settings(
            exchange=ExchangeSettings(base_url=binance.base_url),
            deribit=DeribitSettings(base_url=deribit.base_url),
            database=DatabaseSettings(url=url),
            spool=SpoolSettings(dir=Path(tmp)),
        )
        minute = current_minute_ms() - 120 * 60_000

        def advance(run: int) -> None:  # a new Binance minute each run, so every run writes every row
            binance.minute_ms = minute + run * 60_000
            binance.requests.clear()
            deribit.requests.clear()

        print(f"venues: {RUNS} cycles each, median; {DELAY_S * 1000:.0f} ms added to every answer")
        print(f"  {'venue':10} {'requests':>9} {'rows':>7} {'cycle':>8} {'one at a time':>14} {'ratio':>6}")
        for venue, paths in (("binance", (EXCHANGE_INFO, OPEN_INTEREST)), ("deribit", (BOOK_SUMMARY,))):
            only = replace(base, venues=VenuesSettings(enabled=(venue,)))
            sequential = replace(only, exchange=replace(only.exchange, max_in_flight=1))
            fake = binance if venue == "binance" else deribit
            ours, report = measure(only, store, advance)
            requests = sum(len(fake.requests_to(path)) for path in paths)
            slow, _ = measure(sequential, store, advance)
            figures = f"{requests:9d} {report.rows_fetched:7d} {ours:7.2f}s {slow:13.2f}s {slow / ours:6.1f}"
            print(f"  {venue:10} {figures}")
        both, report = measure(base, store, advance)
        print(f"  {'all':10} {'':9} {report.rows_fetched:7d} {both:7.2f}s")
        engine.dispose()


if __name__ == "__main__":
    main()
