"""Storage: bytes per stored row (table + indexes) of 1,000,000 rows, before and after revision 0007 (the
venue in the key), on plain PostgreSQL and, with TimescaleDB, in the columnstore.

    python benchmarks/bench_storage.py            # plain PostgreSQL (a throwaway server)
    BENCH_DATABASE_URL=postgresql://...:5433/postgres python benchmarks/bench_storage.py   # with TimescaleDB

Three tables of the same 1,000,000 Binance rows, each filled minute by minute as the collector fills them
(indexes grow as rows arrive):
- before: the schema of revision 0006 (key (symbol, ts), no venue);
- migrated: that same table after ``migrate`` to the newest revision (what an upgrade leaves);
- new: a table made by the newest revision and filled by it (what is written from now on).
Baseline (same run, same rows): the usual design, a bigserial id as primary key, UNIQUE (venue, symbol, ts),
and B-tree indexes on ts and on (underlying, expiry, ts). With TimescaleDB, every figure is also given after
every chunk has moved to the columnstore.
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
    print(f"  {title:60} {total / ROWS:7.1f} bytes/row  ({total / 1e6:6.1f} MB)")
    for name, size in parts:
        print(f"    {name:58} {size / ROWS:7.1f} bytes/row")


def measure(url: str, title: str, compress: bool) -> tuple[int, int | None]:
    """Bytes of open_interest, and with TimescaleDB bytes once every chunk is in the columnstore."""
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE open_interest")
        total, parts = sizes(connection, "open_interest")
        timescale = is_hypertable(connection)
        show(title + (", TimescaleDB" if timescale else ""), total, parts)
        if not (timescale and compress):
            return total, None
        connection.execute("SELECT compress_chunk(c, true) FROM show_chunks('open_interest') AS c")
        compressed, compressed_parts = sizes(connection, "open_interest")
        show("  ... every chunk then moved to the columnstore", compressed, compressed_parts)
        return total, compressed


def main() -> None:
    print(f"storage: {ROWS:,} rows ({SYMBOLS:,} symbols x {ROWS // SYMBOLS} minutes), bytes per row")
    with database("oi_bench_storage_before") as url:
        migrated(url, revision="0006")
        fill(url, ROWS, SYMBOLS, START, venue=False)
        before, before_columnstore = measure(url, "before: revision 0006, key (symbol, ts)", compress=True)
        migrated(url)
        still = " (chunks as they were)" if before_columnstore else ""
        after, _ = measure(url, f"migrated: those rows after migrate{still}", compress=False)
        before_migration = before_columnstore or before
    with database("oi_bench_storage_new") as url:
        migrated(url)
        fill(url, ROWS, SYMBOLS, START)
        with psycopg.connect(url, autocommit=True) as connection:
            for statement in filter(str.strip, BASELINE.split(";")):
                connection.execute(statement)
            base, base_parts = sizes(connection, "baseline")
        show("baseline: serial id, UNIQUE, B-tree on ts", base, base_parts)
        new, new_columnstore = measure(url, "new: written by revision 0008, key (venue, symbol, ts)", True)
    print(f"  {'migrated / before':60} {after / before_migration:7.2f}")
    print(f"  {'new / before':60} {new / before:7.2f}")
    print(f"  {'new / baseline':60} {new / base:7.2f}")
    if before_columnstore and new_columnstore:
        ratio = new_columnstore / before_columnstore
        print(f"  {'columnstore: new / before':60} {ratio:7.2f}")


if __name__ == "__main__":
    main()
