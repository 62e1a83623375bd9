"""Queries: the README's example queries on 10,000,000 rows, with their plans.

    python benchmarks/bench_queries.py [--rows 10000000]

Data: 232 BTC options of one expiry (BTC-251226-...) every minute for 30 days up to now, so "the last 7 days"
is a quarter of the table. The three queries of the README: OI by strike at the latest snapshot of an expiry,
one symbol over 30 days, the put/call ratio per expiry per hour. Baseline (same run): each query again with
index and bitmap scans switched off, i.e. the full scan the indexes are there to avoid. Bar: every plan reads
open_interest through an index (or, on TimescaleDB, only the chunks it needs), never a full scan.
"""

from __future__ import annotations

import argparse
import re
import statistics
import time
from datetime import UTC, date, datetime, timedelta

import psycopg
from _support import REPO, database, fill, migrated

SYMBOLS = 232
README = (REPO / "README.md").read_text()
EXAMPLES = re.findall(r"```sql\n(.*?)```", README.split("## Example queries")[1].split("\n## ")[0], re.DOTALL)
QUERIES = {
    "latest OI by strike, BTC 2025-12-26": EXAMPLES[0],
    "one symbol over 30 days": EXAMPLES[1],
    "put/call ratio per expiry per hour, 7 days": EXAMPLES[2],
}
NO_INDEXES = "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off"


def timed(connection: psycopg.Connection, sql: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        connection.execute(sql).fetchall()  # type: ignore[arg-type]
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def plan(connection: psycopg.Connection, sql: str) -> str:
    rows = connection.execute("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) " + sql).fetchall()  # type: ignore[operator]
    return "\n".join(row[0] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    minutes = args.rows // SYMBOLS
    start = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(minutes=minutes)
    with database("oi_bench_queries") as url:
        migrated(url)
        began = time.perf_counter()
        fill(url, args.rows, SYMBOLS, start, first_expiry=date(2025, 12, 26), first_strike=100_000)
        print(f"queries: {minutes * SYMBOLS:,} rows ({SYMBOLS} symbols x {minutes:,} minutes), filled in"
              f" {time.perf_counter() - began:.0f} s")  # fmt: skip
        with psycopg.connect(url, autocommit=True) as connection:
            for name, sql in QUERIES.items():
                ours = timed(connection, sql)
                shown = plan(connection, sql)
                connection.execute(NO_INDEXES)  # type: ignore[arg-type]
                full = timed(connection, sql, runs=1)
                connection.execute("RESET ALL")
                full_scan = bool(re.search(r"Seq Scan on (open_interest|_hyper_\S+)", shown))
                print(f"\n== {name}: {ours:8.1f} ms; full scan {full:8.1f} ms ({full / ours:5.1f}x);"
                      f" {'FULL SCAN' if full_scan else 'index / pruned chunks only'}")  # fmt: skip
                print(shown)


if __name__ == "__main__":
    main()
