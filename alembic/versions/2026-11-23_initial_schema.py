"""Initial schema: tenants, api_keys, products, stock_adjustments, row-level security.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import context, op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TENANT_TABLES = ("api_keys", "products", "stock_adjustments")
CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"


def _ts(name: str, nullable: bool = False) -> sa.Column[sa.DateTime]:
    default = None if nullable else sa.text("now()")
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.create_table(
        "tenants",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("slug", sa.String(40), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("plan", sa.String(40), nullable=False, server_default="free"),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_tenants"),
        sa.UniqueConstraint("slug", name="uq_tenants_slug"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(20), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=False),
        sa.Column("scopes", postgresql.ARRAY(sa.String(40)), nullable=False),
        _ts("created_at"),
        _ts("expires_at", nullable=True),
        _ts("revoked_at", nullable=True),
        _ts("last_used_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_api_keys_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("secret_hash", name="uq_api_keys_secret_hash"),
    )
    op.create_index("ix_api_keys_tenant_id", "api_keys", ["tenant_id"])
    op.create_table(
        "products",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("price_amount", sa.BigInteger(), nullable=False),
        sa.Column("price_currency", sa.String(3), nullable=False),
        sa.Column("stock", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False, server_default="1"),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_products"),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_products_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.UniqueConstraint("tenant_id", "sku", name="uq_products_tenant_id_sku"),
        sa.CheckConstraint("stock >= 0", name="ck_products_stock_not_negative"),
        sa.CheckConstraint("price_amount >= 0", name="ck_products_price_not_negative"),
    )
    op.create_index("ix_products_tenant_created", "products", ["tenant_id", "created_at", "id"])
    op.create_table(
        "stock_adjustments",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("delta", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_stock_adjustments"),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_stock_adjustments_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name="fk_stock_adjustments_product_id_products",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_stock_adjustments_product", "stock_adjustments", ["tenant_id", "product_id"]
    )

    # The application connects as a non-owner role, so row-level security always applies to it.
    op.execute(
        f"DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{app_role}')"
        f" THEN CREATE ROLE {app_role} LOGIN; END IF; END $$"
    )
    op.execute(f"GRANT USAGE ON SCHEMA public TO {app_role}")
    op.execute(f"GRANT SELECT ON tenants, alembic_version TO {app_role}")
    op.execute(f"GRANT INSERT, UPDATE ON tenants TO {app_role}")
    for table in TENANT_TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT})"
            f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
    for table in ("products", "stock_adjustments"):
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")

    # Authentication must find a key before its tenant is known. This owner-run function is the
    # only cross-tenant read of api_keys (which is why api_keys is not FORCE'd: its owner reads
    # it here); it returns one row for one exact 256-bit hash.
    op.execute(
        """
        CREATE FUNCTION storefront_api_key_by_hash(digest bytea) RETURNS SETOF api_keys
        LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp
        AS $$ SELECT * FROM api_keys WHERE secret_hash = digest $$
        """
    )
    op.execute("REVOKE ALL ON FUNCTION storefront_api_key_by_hash(bytea) FROM PUBLIC")
    op.execute(f"GRANT EXECUTE ON FUNCTION storefront_api_key_by_hash(bytea) TO {app_role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION storefront_api_key_by_hash(bytea)")
    op.drop_table("stock_adjustments")
    op.drop_table("products")
    op.drop_table("api_keys")
    op.drop_table("tenants")
