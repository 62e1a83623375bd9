"""open_interest: one row per option symbol per exchange snapshot; a hypertable where TimescaleDB is usable.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from alembic import context, op

from collector.sink import timescale

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

log = logging.getLogger("collector.migrate")

# One day per chunk: the full universe is about 5,000 rows a minute, some 7 million rows and well under 1 GB a
# day with indexes, so a day's chunk stays in memory while it is written, and "the last day / 30 days" queries
# touch 1 or 30 chunks.
CHUNK_INTERVAL = "1 day"


def upgrade() -> None:
    op.create_table(
        "open_interest",
        sa.Column("symbol", sa.Text, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("underlying", sa.Text, nullable=False),
        sa.Column("expiry", sa.Date, nullable=False),
        sa.Column("strike", sa.Numeric, nullable=False),
        sa.Column("side", sa.Text, sa.CheckConstraint("side IN ('call', 'put')"), nullable=False),
        sa.Column("open_interest", sa.Numeric, nullable=False),
        sa.Column("open_interest_usd", sa.Numeric, nullable=False),
        sa.Column("collected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("symbol", "ts", name="open_interest_pkey"),
    )
    # The README's expiry queries (latest snapshot by strike, put/call per expiry over time) read this index.
    op.create_index("open_interest_underlying_expiry_ts", "open_interest", ["underlying", "expiry", "ts"])
    # Time-range queries across symbols (USD OI per underlying per hour): rows arrive in ts order, so a BRIN
    # index of a few pages does what a B-tree of hundreds of MB would.
    op.create_index("open_interest_ts_brin", "open_interest", ["ts"], postgresql_using="brin")

    connection = op.get_bind()
    mode = context.config.attributes["settings"].database.timescaledb
    if timescale.enable(connection, mode):
        connection.execute(
            sa.text(
                "SELECT create_hypertable('open_interest', by_range('ts', CAST(:chunk AS interval)),"
                " create_default_indexes => false, if_not_exists => true)"
            ),
            {"chunk": CHUNK_INTERVAL},
        )
        log.info("open_interest is a TimescaleDB hypertable on ts, %s chunks", CHUNK_INTERVAL)


def downgrade() -> None:
    op.drop_table("open_interest")
