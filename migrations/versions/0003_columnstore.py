"""Columnstore (compression) for open_interest where it is a hypertable; segmented by symbol.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

from collector.sink import timescale

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# Segment by symbol: one symbol's history (the most common read) decompresses only its own segments; within a
# segment rows are ordered newest first, as "latest" queries read them. The policy's age is set by migrate()
# from the configuration (database.compress_after_days) every time it runs.


def upgrade() -> None:
    connection = op.get_bind()
    if not timescale.is_hypertable(connection, "open_interest"):
        return
    if timescale.has_columnstore_api(connection):
        op.execute(
            "ALTER TABLE open_interest SET (timescaledb.enable_columnstore = true,"
            " timescaledb.segmentby = 'symbol', timescaledb.orderby = 'ts DESC')"
        )
    else:
        op.execute(
            "ALTER TABLE open_interest SET (timescaledb.compress,"
            " timescaledb.compress_segmentby = 'symbol', timescaledb.compress_orderby = 'ts DESC')"
        )


def downgrade() -> None:
    connection = op.get_bind()
    if timescale.is_hypertable(connection, "open_interest"):
        op.execute("SELECT remove_compression_policy('open_interest', if_exists => true)")
        op.execute("ALTER TABLE open_interest SET (timescaledb.compress = false)")
