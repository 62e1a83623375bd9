"""coverage_gaps: a scope asked for and never stored (a configured expiry or underlying its venue does not
list; a Deribit currency, OKX family or Bybit coin it does not know) shows too, from the first time it was
asked for until it is stored.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

COVERAGE_GAPS_SINCE = """
CREATE OR REPLACE FUNCTION coverage_gaps_since(since timestamptz)
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
        UNION ALL
        -- asked for in the window, never stored since 30 days before it: missing from the minute it was first
        -- asked for to this one (the cycle that asked this minute failed it already)
        SELECT r.venue, r.scope, max(r.underlying), max(r.expiry),
               greatest(min(date_trunc('minute', r.cycle_start)), date_trunc('minute', since)),
               date_trunc('minute', now())
        FROM collection_runs AS r
        WHERE r.cycle_start >= since
          AND NOT EXISTS (
              SELECT 1 FROM minutes AS m WHERE m.venue = r.venue AND m.scope = r.scope)
        GROUP BY r.venue, r.scope
    )
    SELECT g.venue, g.scope, g.underlying, g.expiry, g.gap_start, g.gap_end,
           (extract(epoch FROM g.gap_end - g.gap_start) / 60)::integer + 1
    FROM gaps AS g
    WHERE g.gap_end >= g.gap_start
    ORDER BY g.venue, g.scope, g.gap_start
$$
"""


def upgrade() -> None:
    op.execute(COVERAGE_GAPS_SINCE)


def downgrade() -> None:
    previous = import_module("collector.migrations.versions.0007_venues").COVERAGE_GAPS_SINCE
    op.execute(previous.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1))
