"""Traffic control (issue 9): per-tenant overrides of the plan, feature flags with per-tenant
overrides, encrypted tenant secrets.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import context, op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def _ts(name: str) -> sa.Column[sa.DateTime]:
    return sa.Column(
        name, sa.DateTime(timezone=True), nullable=False, server_default=sa.text("now()")
    )


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    # The plan is already tenants.plan; what an operator sets on top of it. `emergency` beats
    # everything (incident response), `overrides` beats the plan.
    empty = sa.text("'{}'::jsonb")
    op.add_column(
        "tenants",
        sa.Column("overrides", postgresql.JSONB(), nullable=False, server_default=empty),
    )
    op.add_column(
        "tenants",
        sa.Column("emergency", postgresql.JSONB(), nullable=False, server_default=empty),
    )
    op.add_column("tenants", _ts("config_updated_at"))

    # Flags are operator configuration read by every process (no tenant data): no RLS.
    op.create_table(
        "feature_flags",
        sa.Column("key", sa.String(100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False, server_default=""),
        sa.Column("enabled", sa.Boolean(), nullable=False, server_default=sa.false()),
        # Share of tenants (0..10000 buckets of 10,000) that get the flag when enabled.
        sa.Column("rollout_buckets", sa.Integer(), nullable=False, server_default="0"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("key", name="pk_feature_flags"),
        sa.CheckConstraint(
            "rollout_buckets BETWEEN 0 AND 10000", name="ck_feature_flags_rollout_in_range"
        ),
    )
    op.create_table(
        "feature_flag_overrides",
        sa.Column("flag_key", sa.String(100), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("value", sa.Boolean(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("flag_key", "tenant_id", name="pk_feature_flag_overrides"),
        sa.ForeignKeyConstraint(
            ["flag_key"],
            ["feature_flags.key"],
            name="fk_feature_flag_overrides_flag_key_feature_flags",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_feature_flag_overrides_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    for table in ("feature_flags", "feature_flag_overrides"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")

    # Tenant secrets: tenant data, encrypted at rest (Fernet), under row-level security.
    op.create_table(
        "tenant_secrets",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("ciphertext", sa.LargeBinary(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("tenant_id", "name", name="pk_tenant_secrets"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_tenant_secrets_tenant_id_tenants",
            ondelete="CASCADE",
        ),
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_secrets TO {app_role}")
    op.execute("ALTER TABLE tenant_secrets ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE tenant_secrets FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON tenant_secrets USING (tenant_id = {CURRENT_TENANT})"
        f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )


def downgrade() -> None:
    op.drop_table("tenant_secrets")
    op.drop_table("feature_flag_overrides")
    op.drop_table("feature_flags")
    op.drop_column("tenants", "config_updated_at")
    op.drop_column("tenants", "emergency")
    op.drop_column("tenants", "overrides")
