"""open_interest_hourly: each symbol's last snapshot of every hour; a continuous aggregate on TimescaleDB.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from collector.sink import timescale

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# Both shapes have the same name and columns, so a query written against one runs on the other:
#   hour, symbol, underlying, expiry, strike, side, open_interest, open_interest_usd, snapshot
# where ``snapshot`` is the ts of the hour's last row, the one the values come from.

# Real-time (materialized_only = false): hours not yet materialised are computed from the raw rows at query
# time, so the aggregate is never behind the table, even when the refresh job has not run. Its refresh policy
# (and the raw-row retention it must stay clear of) is set by migrate() from the configuration.
# No index per GROUP BY column (create_group_indexes): two indexes serve the two ways it is read.
CONTINUOUS_AGGREGATE = """
CREATE MATERIALIZED VIEW open_interest_hourly
WITH (timescaledb.continuous, timescaledb.materialized_only = false,
      timescaledb.create_group_indexes = false) AS
SELECT time_bucket(INTERVAL '1 hour', ts) AS hour, symbol, underlying, expiry, strike, side,
       last(open_interest, ts) AS open_interest,
       last(open_interest_usd, ts) AS open_interest_usd,
       max(ts) AS snapshot
FROM open_interest
GROUP BY hour, symbol, underlying, expiry, strike, side
WITH NO DATA
"""

# Plain PostgreSQL: the same rows, computed at query time. date_bin from a UTC origin buckets like
# time_bucket whatever the session's TimeZone (date_trunc would not). underlying..side depend on symbol, so
# listing them in DISTINCT ON changes nothing but lets a WHERE on them reach the table's indexes.
PLAIN_VIEW = """
CREATE VIEW open_interest_hourly AS
SELECT DISTINCT ON (symbol, hour, underlying, expiry, strike, side)
       date_bin(INTERVAL '1 hour', ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS hour,
       symbol, underlying, expiry, strike, side, open_interest, open_interest_usd, ts AS snapshot
FROM open_interest
ORDER BY symbol, hour, underlying, expiry, strike, side, ts DESC
"""


def upgrade() -> None:
    if timescale.is_hypertable(op.get_bind(), "open_interest"):
        op.execute(CONTINUOUS_AGGREGATE)
        op.execute("CREATE INDEX open_interest_hourly_symbol_hour ON open_interest_hourly (symbol, hour)")
        op.execute(
            "CREATE INDEX open_interest_hourly_underlying_expiry_hour"
            " ON open_interest_hourly (underlying, expiry, hour)"
        )
    else:
        op.execute(PLAIN_VIEW)


def downgrade() -> None:
    if timescale.is_continuous_aggregate(op.get_bind(), "open_interest_hourly"):
        op.execute("DROP MATERIALIZED VIEW open_interest_hourly")
    else:
        op.execute("DROP VIEW open_interest_hourly")
