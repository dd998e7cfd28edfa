"""Versioned events with replay (issue 12): the outbox row's payload version, the tenant's log
order for replays, and the table a replay rebuilds `sales_daily` into.

`outbox.version` has a constant default (no table rewrite): rows written by a release that does
not know the column are v1, which is what that release writes. The index on
`(tenant_id, seq)` is built concurrently (no write waits for it), after the transactional part.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    op.add_column(
        "outbox",
        sa.Column("version", sa.SmallInteger(), nullable=False, server_default=sa.text("1")),
    )
    op.create_table(
        "sales_daily_rebuild",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("run_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "run_id", "day", "product_id", "currency", name="pk_sales_daily_rebuild"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_sales_daily_rebuild_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON sales_daily_rebuild TO {app_role}")
    op.execute("ALTER TABLE sales_daily_rebuild ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE sales_daily_rebuild FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON sales_daily_rebuild"
        f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute("SET statement_timeout = '30min'")  # a long outbox takes a while to index
        op.execute(
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_outbox_tenant ON outbox (tenant_id, seq)"
        )
        op.execute("RESET statement_timeout")


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_outbox_tenant")
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    op.drop_table("sales_daily_rebuild")
    op.drop_column("outbox", "version")
