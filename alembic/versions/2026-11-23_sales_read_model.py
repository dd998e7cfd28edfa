"""Events: the consumers' inbox and the sales_daily read model.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.String(100), nullable=False),
        sa.Column("event_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column(
            "processed_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.text("now()"),
        ),
        sa.PrimaryKeyConstraint("consumer", "event_id", name="pk_inbox"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_inbox_tenant_id_tenants", ondelete="CASCADE"
        ),
    )
    op.create_table(
        "sales_daily",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("units", sa.BigInteger(), nullable=False),
        sa.Column("revenue", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "day", "product_id", "currency", name="pk_sales_daily"
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_sales_daily_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    for table in ("inbox", "sales_daily"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT})"
            f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )


def downgrade() -> None:
    op.drop_table("sales_daily")
    op.drop_table("inbox")
