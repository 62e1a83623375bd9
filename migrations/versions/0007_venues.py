"""Every venue in one table: open_interest, the journal and the views carry the venue.

open_interest gains ``venue`` (every existing row is Binance's) and ``underlying_price`` (the price a venue
serves beside the open interest, for a USD estimate where it serves no USD value); ``open_interest_usd``
becomes nullable (Deribit and Bybit serve none); the primary key becomes (venue, symbol, ts): two venues can
list the same symbol text. collection_runs is keyed by (cycle_start, venue, scope): a scope is what one
request covers (Binance an underlying and expiry, Deribit a currency), so ``expiry`` becomes nullable.

On TimescaleDB the columnstore segments by (venue, symbol) from now on; chunks already in it keep working (the
key and the new columns apply to them as they are) and are recompressed with the new segments by the policy.
The continuous aggregate cannot gain a column: the old one is kept, renamed ``open_interest_hourly_v1`` (its
hours may outlive raw rows that retention dropped), and a new one with the venue replaces it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

from alembic import op

from collector.sink import timescale

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

COVERAGE_GAPS_SINCE = """
CREATE FUNCTION coverage_gaps_since(since timestamptz)
RETURNS TABLE (
    venue text, scope text, underlying text, expiry date,
    gap_start timestamptz, gap_end timestamptz, minutes_missing integer
)
LANGUAGE sql STABLE AS $$
    WITH minutes AS (
        SELECT DISTINCT r.venue, r.scope, r.underlying, r.expiry,
               date_trunc('minute', r.snapshot_ts) AS minute
        FROM collection_runs AS r
        WHERE r.snapshot_ts IS NOT NULL AND r.cycle_start >= since
        UNION
        SELECT r.venue, r.scope, r.underlying, r.expiry, max(date_trunc('minute', r.snapshot_ts))
        FROM collection_runs AS r
        WHERE r.snapshot_ts IS NOT NULL
          AND r.cycle_start < since AND r.cycle_start >= since - INTERVAL '30 days'
        GROUP BY r.venue, r.scope, r.underlying, r.expiry
    ), steps AS (
        SELECT m.venue, m.scope, m.underlying, m.expiry, m.minute,
               coalesce(
                   lead(m.minute) OVER (PARTITION BY m.venue, m.scope ORDER BY m.minute),
                   CASE WHEN m.expiry IS NULL OR (m.expiry + TIME '08:00') AT TIME ZONE 'UTC' > now()
                        THEN date_trunc('minute', now()) END
               ) AS next_minute
        FROM minutes AS m
    ), gaps AS (
        SELECT s.venue, s.scope, s.underlying, s.expiry,
               greatest(s.minute + INTERVAL '1 minute', date_trunc('minute', since)) AS gap_start,
               s.next_minute - INTERVAL '1 minute' AS gap_end
        FROM steps AS s
        WHERE s.next_minute > s.minute + INTERVAL '1 minute'
    )
    SELECT g.venue, g.scope, g.underlying, g.expiry, g.gap_start, g.gap_end,
           (extract(epoch FROM g.gap_end - g.gap_start) / 60)::integer + 1
    FROM gaps AS g
    WHERE g.gap_end >= g.gap_start
    ORDER BY g.venue, g.scope, g.gap_start
$$
"""

# The newest row per (venue, symbol), walking the primary key: one probe per symbol (a loose index scan).
OI_LATEST = """
CREATE VIEW oi_latest AS
WITH RECURSIVE symbols AS (
    (SELECT venue, symbol FROM open_interest ORDER BY venue, symbol LIMIT 1)
    UNION ALL
    SELECT next.venue, next.symbol
    FROM symbols AS s
    CROSS JOIN LATERAL (
        SELECT o.venue, o.symbol FROM open_interest AS o
        WHERE (o.venue, o.symbol) > (s.venue, s.symbol)
        ORDER BY o.venue, o.symbol LIMIT 1
    ) AS next
)
SELECT newest.*
FROM symbols AS s
CROSS JOIN LATERAL (
    SELECT * FROM open_interest AS o WHERE o.venue = s.venue AND o.symbol = s.symbol
    ORDER BY o.ts DESC LIMIT 1
) AS newest
"""

OI_EXPIRY_SUMMARY = """
CREATE VIEW oi_expiry_summary AS
SELECT venue, underlying, expiry, ts,
       sum(open_interest) FILTER (WHERE side = 'call') AS call_oi,
       sum(open_interest) FILTER (WHERE side = 'put') AS put_oi,
       sum(open_interest) FILTER (WHERE side = 'put')
         / nullif(sum(open_interest) FILTER (WHERE side = 'call'), 0) AS put_call_ratio,
       sum(open_interest_usd) AS usd_oi
FROM open_interest
GROUP BY venue, underlying, expiry, ts
"""

CONTINUOUS_AGGREGATE = """
CREATE MATERIALIZED VIEW open_interest_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false,
      timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS hour, venue, symbol, underlying, expiry, strike, side,
       last(open_interest, ts) AS open_interest,
       last(open_interest_usd, ts) AS open_interest_usd,
       last(underlying_price, ts) AS underlying_price,
       max(ts) AS snapshot
FROM open_interest
GROUP BY hour, venue, symbol, underlying, expiry, strike, side
WITH NO DATA
"""

PLAIN_HOURLY = """
CREATE VIEW open_interest_hourly AS
SELECT DISTINCT ON (venue, symbol, hour, underlying, expiry, strike, side)
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
       venue, symbol, underlying, expiry, strike, side, open_interest, open_interest_usd, underlying_price,
       ts AS snapshot
FROM open_interest
ORDER BY venue, symbol, hour, underlying, expiry, strike, side, ts DESC
"""


def upgrade() -> None:
    connection = op.get_bind()
    hypertable = timescale.is_hypertable(connection, "open_interest")
    aggregate = timescale.is_continuous_aggregate(connection, "open_interest_hourly")
    op.execute("DROP VIEW oi_latest")
    op.execute("DROP VIEW oi_expiry_summary")
    if aggregate:
        op.execute("SELECT remove_continuous_aggregate_policy('open_interest_hourly', if_exists => true)")
        op.execute("ALTER MATERIALIZED VIEW open_interest_hourly RENAME TO open_interest_hourly_v1")
    else:
        op.execute("DROP VIEW open_interest_hourly")

    op.execute("ALTER TABLE open_interest ADD COLUMN venue text NOT NULL DEFAULT 'binance'")
    op.execute("ALTER TABLE open_interest ALTER COLUMN venue DROP DEFAULT")
    op.execute("ALTER TABLE open_interest ADD COLUMN underlying_price numeric")
    op.execute("ALTER TABLE open_interest ALTER COLUMN open_interest_usd DROP NOT NULL")
    op.execute("ALTER TABLE open_interest DROP CONSTRAINT open_interest_pkey")
    op.execute("ALTER TABLE open_interest ADD CONSTRAINT open_interest_pkey PRIMARY KEY (venue, symbol, ts)")
    if hypertable:
        segments = "timescaledb.segmentby = 'venue, symbol'"
        if timescale.has_columnstore_api(connection):
            op.execute(f"ALTER TABLE open_interest SET ({segments})")
        else:
            op.execute("ALTER TABLE open_interest SET (timescaledb.compress_segmentby = 'venue, symbol')")

    op.execute("DROP VIEW coverage_gaps")
    op.execute("DROP FUNCTION coverage_gaps_since(timestamptz)")
    op.execute("ALTER TABLE collection_runs ADD COLUMN venue text NOT NULL DEFAULT 'binance'")
    op.execute("ALTER TABLE collection_runs ALTER COLUMN venue DROP DEFAULT")
    op.execute("ALTER TABLE collection_runs ADD COLUMN scope text")
    op.execute("UPDATE collection_runs SET scope = underlying || ' ' || to_char(expiry, 'YYMMDD')")
    op.execute("ALTER TABLE collection_runs ALTER COLUMN scope SET NOT NULL")
    op.execute("ALTER TABLE collection_runs DROP CONSTRAINT collection_runs_pkey")
    op.execute("ALTER TABLE collection_runs ALTER COLUMN underlying DROP NOT NULL")
    op.execute("ALTER TABLE collection_runs ALTER COLUMN expiry DROP NOT NULL")
    op.execute(
        "ALTER TABLE collection_runs ADD CONSTRAINT collection_runs_pkey"
        " PRIMARY KEY (cycle_start, venue, scope)"
    )
    op.execute(COVERAGE_GAPS_SINCE)
    op.execute("CREATE VIEW coverage_gaps AS SELECT * FROM coverage_gaps_since('-infinity')")

    op.execute("ALTER TABLE rejected_rows ADD COLUMN venue text")  # NULL: an unreadable spool file's
    op.execute("UPDATE rejected_rows SET venue = 'binance' WHERE stage <> 'spool'")
    op.execute("DROP INDEX rejected_rows_key")
    op.execute(
        "CREATE UNIQUE INDEX rejected_rows_key ON rejected_rows (cycle_start, coalesce(venue, ''),"
        " coalesce(underlying, ''), coalesce(expiry, '-infinity'::date), stage, ordinal)"
    )

    op.execute(OI_LATEST)
    op.execute(OI_EXPIRY_SUMMARY)
    if aggregate:
        op.execute(CONTINUOUS_AGGREGATE)
        # New names: the old aggregate, renamed, keeps its indexes in the same internal schema.
        op.execute(
            "CREATE INDEX open_interest_hourly_venue_symbol_hour"
            " ON open_interest_hourly (venue, symbol, hour)"
        )
        op.execute(
            "CREATE INDEX open_interest_hourly_venue_underlying_expiry_hour"
            " ON open_interest_hourly (venue, underlying, expiry, hour)"
        )
    else:
        op.execute(PLAIN_HOURLY)


def downgrade() -> None:
    raise NotImplementedError(
        "0007 is not reversible: rows of venues other than Binance have no place in 0006"
    )
