"""Views across venues: a book per venue or for the whole market, its max pain, totals by strike, each venue's
share, and a USD estimate for every row.

Venues date their rows differently: Binance per pair on the whole minute, Bybit per answer, Deribit and OKX
per row, to the millisecond. So "the snapshot at a time" is not the rows sharing one ``ts``: it is, for an
underlying and expiry, the newest ``ts`` at or before that time (T), and every symbol's newest row from the
BOOK_WINDOW before T (a symbol missing for a cycle or two is still in the book; a venue silent for longer is
not). Aggregates over time bucket by the UTC minute.

The USD estimate: the venue's own USD value where it serves one (Binance, OKX), else ``open_interest`` x
``underlying_price`` (Deribit, Bybit: the underlying price the venue served beside it); ``usd_basis`` says
which.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04
"""

from __future__ import annotations

from importlib import import_module

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BOOK_WINDOW = "INTERVAL '15 minutes'"
USD_ESTIMATE = "coalesce(o.open_interest_usd, o.open_interest * o.underlying_price)"
USD_BASIS = (
    "CASE WHEN o.open_interest_usd IS NOT NULL THEN 'venue'"
    " WHEN o.underlying_price IS NOT NULL THEN 'open_interest x underlying_price' END"
)
BOOK_COLUMNS = """
    venue text, symbol text, ts timestamptz, underlying text, expiry date, strike numeric, side text,
    open_interest numeric, open_interest_usd numeric, underlying_price numeric, usd_estimate numeric,
    usd_basis text
"""
BOOK_SELECT = f"""
    SELECT DISTINCT ON (o.venue, o.underlying, o.expiry, o.symbol)
           o.venue, o.symbol, o.ts, o.underlying, o.expiry, o.strike, o.side, o.open_interest,
           o.open_interest_usd, o.underlying_price,
           {USD_ESTIMATE} AS usd_estimate, {USD_BASIS} AS usd_basis
"""

OI_BOOK = f"""
CREATE FUNCTION oi_book(p_underlying text, p_expiry date, p_at timestamptz DEFAULT now(),
                        p_venue text DEFAULT NULL)
RETURNS TABLE ({BOOK_COLUMNS})
LANGUAGE sql STABLE AS $$
    WITH newest AS (
        SELECT max(o.ts) AS ts FROM open_interest AS o
        WHERE o.underlying = p_underlying AND o.expiry = p_expiry AND o.ts <= p_at
          AND (p_venue IS NULL OR o.venue = p_venue)
    )
    {BOOK_SELECT}
    FROM open_interest AS o, newest
    WHERE o.underlying = p_underlying AND o.expiry = p_expiry
      AND o.ts <= newest.ts AND o.ts > newest.ts - {BOOK_WINDOW}
      AND (p_venue IS NULL OR o.venue = p_venue)
    ORDER BY o.venue, o.underlying, o.expiry, o.symbol, o.ts DESC
$$
"""

# Max pain over a book: the expiry price, among the listed strikes, at which holders' total payout is
# smallest. A call of strike s pays max(0, K - s) a coin, a put max(0, s - K); every venue counts open
# interest in the base coin, so venues add up. Ties return every strike that shares the smallest payout.
OI_MAX_PAIN = """
CREATE FUNCTION oi_max_pain(p_underlying text, p_expiry date, p_at timestamptz DEFAULT now(),
                            p_venue text DEFAULT NULL)
RETURNS TABLE (snapshot timestamptz, strike numeric, total_payout numeric)
LANGUAGE sql STABLE AS $$
    WITH book AS (
        SELECT b.ts, b.strike, b.side, b.open_interest
        FROM oi_book(p_underlying, p_expiry, p_at, p_venue) AS b
    ), payouts AS (
        SELECT k.strike,
               sum(CASE WHEN b.side = 'call' THEN greatest(k.strike - b.strike, 0)
                        ELSE greatest(b.strike - k.strike, 0) END * b.open_interest) AS total_payout
        FROM (SELECT DISTINCT strike FROM book) AS k CROSS JOIN book AS b
        GROUP BY k.strike
    )
    SELECT (SELECT max(ts) FROM book), p.strike, p.total_payout
    FROM payouts AS p
    WHERE p.total_payout = (SELECT min(total_payout) FROM payouts)
    ORDER BY p.strike
$$
"""

# What is live now: every symbol's newest row from the last BOOK_WINDOW, with its USD estimate.
OI_CURRENT = f"""
CREATE VIEW oi_current AS
{BOOK_SELECT}
FROM open_interest AS o
WHERE o.ts > now() - {BOOK_WINDOW}
ORDER BY o.venue, o.underlying, o.expiry, o.symbol, o.ts DESC
"""

OI_STRIKE_TOTALS = """
CREATE VIEW oi_strike_totals AS
SELECT underlying, expiry, strike,
       sum(open_interest) FILTER (WHERE side = 'call') AS call_oi,
       sum(open_interest) FILTER (WHERE side = 'put') AS put_oi,
       sum(open_interest) AS total_oi,
       sum(usd_estimate) AS usd_estimate,
       count(*) FILTER (WHERE usd_estimate IS NULL) AS rows_without_usd,
       array_agg(DISTINCT venue ORDER BY venue) AS venues,
       max(ts) AS snapshot
FROM oi_current
GROUP BY underlying, expiry, strike
"""

# Per underlying, each venue's part of the open interest (in coin) and of the USD estimate; the rows with a
# NULL underlying are every underlying together, where only USD adds up.
OI_VENUE_SHARE = """
CREATE VIEW oi_venue_share AS
SELECT underlying, venue,
       CASE WHEN GROUPING(underlying) = 0 THEN sum(open_interest) END AS open_interest,
       sum(usd_estimate) AS usd_estimate,
       CASE WHEN GROUPING(underlying) = 0 THEN
           sum(open_interest) / nullif(sum(sum(open_interest)) OVER (PARTITION BY underlying), 0) END
           AS oi_share,
       sum(usd_estimate) / nullif(sum(sum(usd_estimate)) OVER (PARTITION BY underlying), 0) AS usd_share,
       max(ts) AS snapshot
FROM oi_current
GROUP BY GROUPING SETS ((underlying, venue), (venue))
"""

# Per venue, underlying, expiry and UTC minute (each symbol's newest row of the minute).
OI_EXPIRY_SUMMARY = f"""
CREATE VIEW oi_expiry_summary AS
SELECT venue, underlying, expiry, minute AS ts,
       sum(open_interest) FILTER (WHERE side = 'call') AS call_oi,
       sum(open_interest) FILTER (WHERE side = 'put') AS put_oi,
       sum(open_interest) FILTER (WHERE side = 'put')
         / nullif(sum(open_interest) FILTER (WHERE side = 'call'), 0) AS put_call_ratio,
       sum(open_interest_usd) AS usd_oi,
       sum(usd_estimate) AS usd_estimate
FROM (
    SELECT DISTINCT ON (o.venue, o.underlying, o.expiry, minute, o.symbol)
           o.venue, o.underlying, o.expiry, o.symbol, o.side, o.open_interest, o.open_interest_usd,
           date_bin(INTERVAL '1 minute', o.ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS minute,
           {USD_ESTIMATE} AS usd_estimate
    FROM open_interest AS o
    ORDER BY o.venue, o.underlying, o.expiry, minute, o.symbol, o.ts DESC
) AS per_minute
GROUP BY venue, underlying, expiry, minute
"""


def upgrade() -> None:
    op.execute("DROP FUNCTION oi_max_pain(text, date, timestamptz)")
    op.execute("DROP VIEW oi_expiry_summary")
    op.execute(OI_BOOK)
    op.execute(OI_MAX_PAIN)
    op.execute(OI_EXPIRY_SUMMARY)
    op.execute(OI_CURRENT)
    op.execute(OI_STRIKE_TOTALS)
    op.execute(OI_VENUE_SHARE)


def downgrade() -> None:
    for view in ("oi_venue_share", "oi_strike_totals", "oi_current", "oi_expiry_summary"):
        op.execute(f"DROP VIEW {view}")
    op.execute("DROP FUNCTION oi_max_pain(text, date, timestamptz, text)")
    op.execute("DROP FUNCTION oi_book(text, date, timestamptz, text)")
    op.execute(import_module("collector.migrations.versions.0007_venues").OI_EXPIRY_SUMMARY)
    op.execute(import_module("collector.migrations.versions.0004_analysis_views").OI_MAX_PAIN)
