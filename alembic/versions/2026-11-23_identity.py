"""Identity: users and refresh tokens, with row-level security and login look-ups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    default = None if nullable else sa.text("now()")
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def _tenant_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["tenant_id"], ["tenants.id"], name=f"fk_{table}_tenant_id_tenants", ondelete="CASCADE"
    )


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.create_table(
        "users",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("role", sa.String(20), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        _tenant_fk("users"),
        sa.UniqueConstraint("email", name="uq_users_email"),
        sa.CheckConstraint(
            "role IN ('owner', 'admin', 'member', 'viewer')", name="ck_users_role_known"
        ),
    )
    op.create_index("ix_users_tenant_created", "users", ["tenant_id", "created_at", "id"])
    op.create_table(
        "refresh_tokens",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.LargeBinary(), nullable=False),
        _ts("created_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        _ts("used_at", nullable=True),
        _ts("revoked_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_refresh_tokens"),
        _tenant_fk("refresh_tokens"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name="fk_refresh_tokens_user_id_users", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("token_hash", name="uq_refresh_tokens_token_hash"),
    )
    op.create_index("ix_refresh_tokens_family", "refresh_tokens", ["tenant_id", "family_id"])
    op.create_index("ix_refresh_tokens_user_id", "refresh_tokens", ["user_id"])

    for table in ("users", "refresh_tokens"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT})"
            f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )

    # Login and refresh find their row before the tenant is known: owner-run functions that
    # return one row for one exact key are the only cross-tenant reads (as for API keys).
    for name, table, column, argument in (
        ("storefront_user_by_email", "users", "email", "text"),
        ("storefront_refresh_token_by_hash", "refresh_tokens", "token_hash", "bytea"),
    ):
        op.execute(
            f"CREATE FUNCTION {name}(wanted {argument}) RETURNS SETOF {table}"
            " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp"
            f" AS $$ SELECT * FROM {table} WHERE {column} = wanted $$"
        )
        op.execute(f"REVOKE ALL ON FUNCTION {name}({argument}) FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {name}({argument}) TO {app_role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION storefront_refresh_token_by_hash(bytea)")
    op.execute("DROP FUNCTION storefront_user_by_email(text)")
    op.drop_table("refresh_tokens")
    op.drop_table("users")
