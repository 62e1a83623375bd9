"""Storage: bytes per stored row (table + indexes) after 1,000,000 rows.

    python benchmarks/bench_storage.py            # plain PostgreSQL (a throwaway server)
    BENCH_DATABASE_URL=postgresql://...:5433/postgres python benchmarks/bench_storage.py   # with TimescaleDB

Both tables are filled minute by minute, as the collector fills them (indexes grow as rows arrive).
Baseline (same run, same rows): the usual design, a bigserial id as primary key, UNIQUE (venue, symbol, ts),
and B-tree indexes on ts and on (underlying, expiry, ts). Ours: the natural key (venue, symbol, ts) as
primary key, the (underlying, expiry, ts) B-tree the expiry queries need, and a BRIN index on ts. With
TimescaleDB, the figures are also given after every chunk has moved to the columnstore (segmented by venue
and symbol).
"""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
from _support import database, fill, migrated

ROWS, SYMBOLS = 1_000_000, 4_000
START = datetime(2026, 1, 1, tzinfo=UTC)

BASELINE = """
CREATE TABLE baseline (id bigserial PRIMARY KEY, LIKE open_interest, UNIQUE (venue, symbol, ts));
CREATE INDEX ON baseline (ts);
CREATE INDEX ON baseline (underlying, expiry, ts);
INSERT INTO baseline (venue, symbol, ts, underlying, expiry, strike, side, open_interest,
                      open_interest_usd, underlying_price, collected_at)
SELECT venue, symbol, ts, underlying, expiry, strike, side, open_interest, open_interest_usd,
       underlying_price, collected_at
FROM open_interest ORDER BY ts, symbol;
VACUUM ANALYZE baseline;
"""


def is_hypertable(connection: psycopg.Connection) -> bool:
    catalog = connection.execute("SELECT to_regclass('timescaledb_information.hypertables')").fetchone()
    if catalog is None or catalog[0] is None:
        return False
    query = "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = 'open_interest'"
    return connection.execute(query).fetchone() is not None


def sizes(connection: psycopg.Connection, table: str) -> tuple[int, list[tuple[str, int]]]:
    """Total bytes, and bytes by part (heap and each index), of a plain table or of a hypertable's chunks."""
    if table == "open_interest" and is_hypertable(connection):
        total = connection.execute("SELECT hypertable_size('open_interest')").fetchone()[0]  # type: ignore[index]
        parts = connection.execute(
            "SELECT 'heap (all chunks)', sum(table_bytes + toast_bytes)::bigint,"
            " 'indexes (all chunks)', sum(index_bytes)::bigint FROM chunks_detailed_size('open_interest')"
        ).fetchone()
        return total, [(parts[0], parts[1]), (parts[2], parts[3])]  # type: ignore[index]
    total = connection.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0]  # type: ignore[index]
    parts = connection.execute(
        "SELECT 'heap', pg_table_size(%s::regclass) UNION ALL"
        " SELECT indexrelid::regclass::text, pg_relation_size(indexrelid) FROM pg_index"
        " WHERE indrelid = %s::regclass",
        (table, table),
    ).fetchall()
    return total, [(name, size) for name, size in parts]


def show(title: str, total: int, parts: list[tuple[str, int]]) -> None:
    print(f"  {title:44} {total / ROWS:7.1f} bytes/row  ({total / 1e6:6.1f} MB)")
    for name, size in parts:
        print(f"    {name:42} {size / ROWS:7.1f} bytes/row")


def main() -> None:
    with database("oi_bench_storage") as url:
        migrated(url)
        fill(url, ROWS, SYMBOLS, START)
        with psycopg.connect(url, autocommit=True) as connection:
            ours, our_parts = sizes(connection, "open_interest")
            for statement in filter(str.strip, BASELINE.split(";")):
                connection.execute(statement)
            base, base_parts = sizes(connection, "baseline")
            timescale = is_hypertable(connection)
            print(f"storage: {ROWS:,} rows ({SYMBOLS:,} symbols x {ROWS // SYMBOLS} minutes)")
            show("baseline: serial id, UNIQUE, B-tree on ts", base, base_parts)
            show("oi-collector" + (" (TimescaleDB, row store)" if timescale else ""), ours, our_parts)
            print(f"  ours / baseline                              {ours / base:7.2f}")
            if timescale:
                connection.execute("SELECT compress_chunk(c) FROM show_chunks('open_interest') AS c")
                compressed, parts = sizes(connection, "open_interest")
                show("oi-collector, every chunk in the columnstore", compressed, parts)
                print(f"  columnstore / baseline                       {compressed / base:7.2f}")


if __name__ == "__main__":
    main()
