"""rejected_rows: every row a venue served that was not stored, with who refused it and why.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain table on TimescaleDB too: a handful of rows a day, read by people asking "why is this missing?".
    # A batch replayed after a crash journals its rejections again: the unique key makes that a no-op. An
    # expression index, not UNIQUE NULLS NOT DISTINCT, so that it builds on PostgreSQL before 15 as well.
    op.create_table(
        "rejected_rows",
        sa.Column("cycle_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("underlying", sa.Text()),
        sa.Column("expiry", sa.Date()),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("symbol", sa.Text()),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.CheckConstraint("stage IN ('normalise', 'database', 'spool')", name="rejected_rows_stage"),
    )
    op.execute(
        "CREATE UNIQUE INDEX rejected_rows_key ON rejected_rows"
        " (cycle_start, coalesce(underlying, ''), coalesce(expiry, '-infinity'::date), stage, ordinal)"
    )


def downgrade() -> None:
    op.drop_table("rejected_rows")
