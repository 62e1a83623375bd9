"""Cycle latency: the full universe with 100 ms added to every exchange response.

    python benchmarks/bench_cycle.py

Baseline (same run): the same cycle with one request in flight, i.e. the pairs fetched one after another.
Bars: the collector's cycle (fetch + normalise + commit) at least 10x faster than the baseline, and within
1.5x of the limit for its requests in flight: ceil(pairs / in-flight) x 100 ms, plus one database write of all
rows. As in the daemon, a cycle starts on the pairs of the cycle before while exchangeInfo is under way.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import statistics
import time
from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

from _support import database, migrated

from collector.config import (
    BinanceSettings,
    DatabaseSettings,
    ExchangeSettings,
    Settings,
    SpoolSettings,
    VenuesSettings,
)
from collector.cycle import CycleReport, KnownScopes, collect_once
from collector.records import Batch
from collector.sink.postgres import PostgresSink, make_engine
from collector.sink.spool import Spool
from collector.sink.store import Store
from collector.venues.gate import ExchangeGate
from tests.fake_exchange import DEFAULT_UNIVERSE, RECENT_MINUTE_MS, FakeExchange

DELAY_S = 0.1
RUNS = 5
# Six underlyings, every listed expiry: 56 pairs, some 4,000 rows.
UNIVERSE = {
    name: [*expiries, "270326", "271231"] if name in ("BTC", "ETH") else [*expiries, "260116", "260626"]
    for name, expiries in DEFAULT_UNIVERSE.items()
}


def cycle(
    settings: Settings, store: Store, minute_ms: int, fake: FakeExchange, known: KnownScopes
) -> CycleReport:
    fake.minute_ms = minute_ms  # a new minute each run, so every run writes every row
    report = asyncio.run(collect_once(settings, store, ExchangeGate(), time.time() + 60, known))
    assert report.ok, report.summary()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--in-flight", type=int, default=ExchangeSettings().max_in_flight)
    args = parser.parse_args()
    with (
        database("oi_bench_cycle") as url,
        FakeExchange(UNIVERSE, delay_s=DELAY_S) as fake,
        TemporaryDirectory() as tmp,
    ):
        migrated(url)
        engine = make_engine(url)
        store = Store(PostgresSink(engine), Spool(Path(tmp), 10**9))
        settings = Settings(
            exchange=ExchangeSettings(max_in_flight=args.in_flight),
            binance=BinanceSettings(base_url=fake.base_url),
            venues=VenuesSettings(enabled=("binance",)),
            database=DatabaseSettings(url=url),
            spool=SpoolSettings(dir=Path(tmp)),
        )
        in_flight = settings.exchange.max_in_flight
        sequential = replace(settings, exchange=replace(settings.exchange, max_in_flight=1))
        pairs, rows = len(fake.pairs()), len(fake.all_rows())
        minute = RECENT_MINUTE_MS
        # As in the daemon, each cycle knows the pairs of the one before (the first run only primes that).
        known = KnownScopes()
        baseline = [cycle(sequential, store, minute + n * 60_000, fake, known).duration_s for n in range(3)][
            1:
        ]
        known = KnownScopes()
        ours = [
            cycle(settings, store, minute + (10 + n) * 60_000, fake, known).duration_s
            for n in range(RUNS + 1)
        ]
        ours = ours[1:]
        writes = []
        for n in range(RUNS):  # one database write of all rows, alone (spool included, as in a cycle)
            fake.minute_ms = minute + (20 + n) * 60_000
            records = []
            for underlying, expiry in fake.pairs():
                from datetime import UTC, datetime

                from collector.venues.binance import Pair, normalise_rows

                rows = fake.rows_for(underlying, expiry)
                records += normalise_rows(rows, datetime.now(UTC), Pair(underlying, expiry)).records
            started = time.perf_counter()
            store.commit(Batch([], records))
            writes.append(time.perf_counter() - started)
        engine.dispose()
    base, cyc, write = statistics.median(baseline), statistics.median(ours), statistics.median(writes)
    limit = math.ceil(pairs / in_flight) * DELAY_S + write
    print(f"cycle latency: {pairs} pairs, {rows} rows, {DELAY_S * 1000:.0f} ms added to every response")
    print(f"  baseline, one request in flight     {base:6.3f} s  (median of {len(baseline)})")
    print(f"  collector, {in_flight:2d} requests in flight    {cyc:6.3f} s  (median of {RUNS})")
    print(f"  one database write of all rows      {write:6.3f} s")
    print(f"  limit: ceil({pairs}/{in_flight}) x {DELAY_S:.1f} s + write = {limit:.3f} s")
    print(f"  speed-up over the baseline          {base / cyc:6.1f}x   (bar: >= 10x)")
    print(f"  cycle / limit                       {cyc / limit:6.2f}    (bar: <= 1.5)")


if __name__ == "__main__":
    main()
