"""Sink throughput: upsert 200,000 rows into an open_interest that already holds 1,000,000.

    python benchmarks/bench_sink.py

Baselines (same run): one INSERT per row through the SQLAlchemy ORM (the naive way; timed on a sample and
given in rows per second), and COPY into an empty table of the same shape (the limit).
Bars: at least 20x the naive way, at least a third of COPY. Then the same 200,000 rows again, unchanged: the
upsert must write nothing, so n_tup_upd does not move.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import psycopg
from _support import database, fill, migrated
from sqlalchemy import Engine
from sqlalchemy.orm import DeclarativeBase, Session

from collector.records import Batch, OpenInterest
from collector.sink.postgres import PostgresSink, make_engine, open_interest

EXISTING, NEW, NAIVE_SAMPLE = 1_000_000, 200_000, 5_000
COLUMNS = [column.name for column in open_interest.columns]
SYMBOLS = 4_000  # about the full universe: 1,000,000 rows are 250 minutes of it
START = datetime(2026, 1, 1, tzinfo=UTC)


class Row(DeclarativeBase):
    pass


class OpenInterestRow(Row):
    __table__ = open_interest


def records(first_minute: int, count: int) -> list[OpenInterest]:
    collected = datetime.now(UTC)
    made = []
    for n in range(count):
        minute, k = divmod(n, SYMBOLS)
        strike = Decimal(50_000 + 500 * (k // 2 % 400))
        side = "call" if k % 2 == 0 else "put"
        expiry = date(2026, 3, 1) + timedelta(days=7 * (k // 800))
        made.append(
            OpenInterest(
                venue="binance",
                symbol=f"BTC-{expiry:%y%m%d}-{strike}-{side[0].upper()}",
                ts=START + timedelta(minutes=first_minute + minute),
                underlying="BTC",
                expiry=expiry,
                strike=strike,
                side=side,
                open_interest=Decimal(n % 9973) / 100,
                open_interest_usd=Decimal(n % 9973) * Decimal("1234.5678901234"),
                underlying_price=None,
                collected_at=collected,
            )
        )
    return made


def naive(engine: Engine, rows: list[OpenInterest]) -> float:
    started = time.perf_counter()
    with Session(engine) as session:
        for record in rows:
            session.add(OpenInterestRow(**{name: getattr(record, name) for name in COLUMNS}))
            session.flush()  # one INSERT per row, as code written row by row does
        session.commit()
    return len(rows) / (time.perf_counter() - started)


def copy_into_empty(url: str, rows: list[OpenInterest]) -> float:
    with psycopg.connect(url) as connection:
        connection.execute("CREATE TABLE copy_target (LIKE open_interest INCLUDING ALL)")
        started = time.perf_counter()
        with connection.cursor().copy(f"COPY copy_target ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for record in rows:
                copy.write_row([getattr(record, name) for name in COLUMNS])
        connection.commit()
        return len(rows) / (time.perf_counter() - started)


def updates(url: str) -> int:
    with psycopg.connect(url) as connection:
        return connection.execute(
            "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'open_interest'"
        ).fetchone()[0]  # type: ignore[index]


def main() -> None:
    with database("oi_bench_sink") as url:
        migrated(url, "off")
        fill(url, EXISTING, SYMBOLS, START - timedelta(days=30))
        new = records(0, NEW)
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        sink = PostgresSink(engine)
        started = time.perf_counter()
        result = sink.write(Batch([], new))
        ours = NEW / (time.perf_counter() - started)
        assert result.written == NEW
        engine.dispose()  # a backend's statistics reach pg_stat_user_tables when it ends
        before = updates(url)
        engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        started = time.perf_counter()
        again = PostgresSink(engine).write(Batch([], new))
        unchanged_rate = NEW / (time.perf_counter() - started)
        engine.dispose()
        time.sleep(0.5)
        after = updates(url)
        naive_engine = make_engine(url.replace("postgresql://", "postgresql+psycopg://"))
        naive_rate = naive(naive_engine, records(10_000, NAIVE_SAMPLE))
        naive_engine.dispose()
        copy_rate = copy_into_empty(url, new)
    print(f"sink throughput: upsert {NEW:,} rows into open_interest holding {EXISTING:,}")
    print(f"  naive, one ORM INSERT per row       {naive_rate:10,.0f} rows/s  (sample of {NAIVE_SAMPLE:,})")
    print(f"  COPY into an empty table            {copy_rate:10,.0f} rows/s")
    print(f"  collector upsert (COPY + INSERT)   {ours:10,.0f} rows/s  ({NEW / ours:.2f} s)")
    print(f"  vs naive                            {ours / naive_rate:10.1f}x   (bar: >= 20x)")
    print(f"  vs COPY                             {ours / copy_rate:10.2f}    (bar: >= 0.33)")
    print(f"  same rows again, unchanged          {unchanged_rate:10,.0f} rows/s; written {again.written},"
          f" unchanged {again.unchanged:,}; n_tup_upd {before} -> {after}")  # fmt: skip


if __name__ == "__main__":
    main()
