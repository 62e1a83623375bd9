"""Analysis in SQL: oi_latest, oi_expiry_summary and oi_max_pain(underlying, expiry, at).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The newest row per symbol. DISTINCT ON would read the whole table; this walks the primary key instead, one
# probe per symbol (a "loose index scan"), then takes each symbol's newest row.
OI_LATEST = """
CREATE VIEW oi_latest AS
WITH RECURSIVE symbols AS (
    (SELECT symbol FROM open_interest ORDER BY symbol LIMIT 1)
    UNION ALL
    SELECT (SELECT o.symbol FROM open_interest AS o WHERE o.symbol > s.symbol ORDER BY o.symbol LIMIT 1)
    FROM symbols AS s
    WHERE s.symbol IS NOT NULL
)
SELECT newest.*
FROM symbols AS s
CROSS JOIN LATERAL (
    SELECT * FROM open_interest AS o WHERE o.symbol = s.symbol ORDER BY o.ts DESC LIMIT 1
) AS newest
WHERE s.symbol IS NOT NULL
"""

OI_EXPIRY_SUMMARY = """
CREATE VIEW oi_expiry_summary AS
SELECT underlying, expiry, ts,
       sum(open_interest) FILTER (WHERE side = 'call') AS call_oi,
       sum(open_interest) FILTER (WHERE side = 'put') AS put_oi,
       sum(open_interest) FILTER (WHERE side = 'put')
         / nullif(sum(open_interest) FILTER (WHERE side = 'call'), 0) AS put_call_ratio,
       sum(open_interest_usd) AS usd_oi
FROM open_interest
GROUP BY underlying, expiry, ts
"""

# Max pain: the expiry price, among the listed strikes, at which holders' total payout is smallest, for the
# snapshot at or before ``at``. A call of strike s pays max(0, K - s) a contract, a put max(0, s - K).
# Ties return every strike that shares the smallest payout.
OI_MAX_PAIN = """
CREATE FUNCTION oi_max_pain(p_underlying text, p_expiry date, p_at timestamptz DEFAULT now())
RETURNS TABLE (snapshot timestamptz, strike numeric, total_payout numeric)
LANGUAGE sql STABLE AS $$
    WITH snap AS (
        SELECT max(ts) AS ts FROM open_interest
        WHERE underlying = p_underlying AND expiry = p_expiry AND ts <= p_at
    ), book AS (
        SELECT o.strike, o.side, o.open_interest
        FROM open_interest AS o, snap
        WHERE o.underlying = p_underlying AND o.expiry = p_expiry AND o.ts = snap.ts
    ), payouts AS (
        SELECT k.strike,
               sum(CASE WHEN b.side = 'call' THEN greatest(k.strike - b.strike, 0)
                        ELSE greatest(b.strike - k.strike, 0) END * b.open_interest) AS total_payout
        FROM (SELECT DISTINCT strike FROM book) AS k CROSS JOIN book AS b
        GROUP BY k.strike
    )
    SELECT snap.ts, p.strike, p.total_payout
    FROM payouts AS p, snap
    WHERE p.total_payout = (SELECT min(total_payout) FROM payouts)
    ORDER BY p.strike
$$
"""


def upgrade() -> None:
    op.execute(OI_LATEST)
    op.execute(OI_EXPIRY_SUMMARY)
    op.execute(OI_MAX_PAIN)


def downgrade() -> None:
    op.execute("DROP FUNCTION oi_max_pain(text, date, timestamptz)")
    op.execute("DROP VIEW oi_expiry_summary")
    op.execute("DROP VIEW oi_latest")
