"""Expand (issue 12): order lines get a stored `line_amount` (quantity x unit_amount), nullable and
without a default, so adding it is a catalog-only change and the previous release, which does
not know the column, keeps inserting lines. Rows from before are filled by the batched backfill
`storefront migrate backfill order_line_amounts` (never here, inside the DDL transaction), whose
progress lives in `backfill_progress`. The contract step is 0013.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Waiting for a lock queues every query on the table behind us: give up quickly instead
    # (rerun the migration); every statement here is catalog-only.
    op.execute("SET LOCAL lock_timeout = '3s'")
    op.execute("SET LOCAL statement_timeout = '15s'")
    op.add_column("order_lines", sa.Column("line_amount", sa.BigInteger(), nullable=True))
    # Read and written only by the schema owner's backfill runs (no tenant data, no grant).
    op.create_table(
        "backfill_progress",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("last_key", sa.ARRAY(sa.Text()), nullable=True),
        sa.Column("rows_updated", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "started_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_backfill_progress"),
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '3s'")
    op.execute("SET LOCAL statement_timeout = '15s'")
    op.drop_table("backfill_progress")
    op.drop_column("order_lines", "line_amount")
