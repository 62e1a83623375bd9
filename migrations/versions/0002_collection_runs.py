"""collection_runs: one row per pair per cycle; coverage_gaps: the minutes no snapshot was stored for.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Gaps come from the journal, not from open_interest: 44 pairs x 1,440 minutes is 63,000 journal rows a day
# against millions of option rows, and a journal row is committed in the same transaction as its pair's rows.
# A gap is a run of whole minutes between two stored snapshots of a pair, or after the last one while the pair
# has not expired (expiries settle at 08:00 UTC); the current minute is not counted until it is over. The
# newest snapshot before ``since`` (looked for up to 30 days back) anchors a gap that began before it.
COVERAGE_GAPS_SINCE = """
CREATE FUNCTION coverage_gaps_since(since timestamptz)
RETURNS TABLE (
    underlying text, expiry date, gap_start timestamptz, gap_end timestamptz, minutes_missing integer
)
LANGUAGE sql STABLE AS $$
    WITH minutes AS (
        SELECT DISTINCT r.underlying, r.expiry, date_trunc('minute', r.snapshot_ts) AS minute
        FROM collection_runs AS r
        WHERE r.snapshot_ts IS NOT NULL AND r.cycle_start >= since
        UNION
        SELECT r.underlying, r.expiry, max(date_trunc('minute', r.snapshot_ts))
        FROM collection_runs AS r
        WHERE r.snapshot_ts IS NOT NULL
          AND r.cycle_start < since AND r.cycle_start >= since - INTERVAL '30 days'
        GROUP BY r.underlying, r.expiry
    ), steps AS (
        SELECT m.underlying, m.expiry, m.minute,
               coalesce(
                   lead(m.minute) OVER (PARTITION BY m.underlying, m.expiry ORDER BY m.minute),
                   CASE WHEN (m.expiry + TIME '08:00') AT TIME ZONE 'UTC' > now()
                        THEN date_trunc('minute', now()) END
               ) AS next_minute
        FROM minutes AS m
    ), gaps AS (
        SELECT s.underlying, s.expiry,
               greatest(s.minute + INTERVAL '1 minute', date_trunc('minute', since)) AS gap_start,
               s.next_minute - INTERVAL '1 minute' AS gap_end
        FROM steps AS s
        WHERE s.next_minute > s.minute + INTERVAL '1 minute'
    )
    SELECT g.underlying, g.expiry, g.gap_start, g.gap_end,
           (extract(epoch FROM g.gap_end - g.gap_start) / 60)::integer + 1
    FROM gaps AS g
    WHERE g.gap_end >= g.gap_start
    ORDER BY g.underlying, g.expiry, g.gap_start
$$
"""


def upgrade() -> None:
    op.create_table(
        "collection_runs",
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("underlying", sa.Text, nullable=False),
        sa.Column("expiry", sa.Date, nullable=False),
        sa.Column(
            "status",
            sa.Text,
            sa.CheckConstraint("status IN ('ok', 'partial', 'failed', 'spooled')"),
            nullable=False,
        ),
        sa.Column("snapshot_ts", sa.DateTime(timezone=True)),
        sa.Column("rows_stored", sa.Integer, nullable=False),
        sa.Column("rows_rejected", sa.Integer, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error_code", sa.Integer),
        sa.Column("error_message", sa.Text),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("cycle_start", "underlying", "expiry", name="collection_runs_pkey"),
    )
    op.execute(COVERAGE_GAPS_SINCE)
    op.execute("CREATE VIEW coverage_gaps AS SELECT * FROM coverage_gaps_since('-infinity')")


def downgrade() -> None:
    op.execute("DROP VIEW coverage_gaps")
    op.execute("DROP FUNCTION coverage_gaps_since(timestamptz)")
    op.drop_table("collection_runs")
