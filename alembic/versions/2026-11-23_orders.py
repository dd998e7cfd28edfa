"""Orders: orders, order lines, idempotency keys, the transactional outbox.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import context, op

revision = "0003"
down_revision = "0002"
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
        "orders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("total_amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_token", sa.String(200), nullable=False),
        sa.Column("payment_key", sa.String(300), nullable=False),
        sa.Column("authorization_id", sa.String(100), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_orders"),
        _tenant_fk("orders"),
        sa.CheckConstraint(
            "status IN ('pending', 'confirmed', 'payment_failed', 'failed', 'cancelled')",
            name="ck_orders_status_known",
        ),
    )
    op.create_index("ix_orders_tenant_created", "orders", ["tenant_id", "created_at", "id"])
    op.create_index(
        "ix_orders_pending",
        "orders",
        ["updated_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), nullable=False),
        sa.Column("product_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("order_id", "product_id", name="pk_order_lines"),
        sa.ForeignKeyConstraint(
            ["order_id"], ["orders.id"], name="fk_order_lines_order_id_orders", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["product_id"],
            ["products.id"],
            name="fk_order_lines_product_id_products",
            ondelete="RESTRICT",
        ),
        _tenant_fk("order_lines"),
        sa.CheckConstraint("quantity > 0", name="ck_order_lines_quantity_positive"),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("fingerprint", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("order_id", sa.Uuid(), nullable=True),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", postgresql.JSONB(), nullable=True),
        _ts("created_at"),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "key", name="pk_idempotency_keys"),
        _tenant_fk("idempotency_keys"),
        sa.CheckConstraint(
            "status IN ('in_flight', 'completed')", name="ck_idempotency_keys_status_known"
        ),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])
    op.create_table(
        "outbox",
        sa.Column("seq", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("topic", sa.String(100), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        _ts("created_at"),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _ts("next_attempt_at"),
        _ts("published_at", nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_outbox"),
        sa.UniqueConstraint("id", name="uq_outbox_id"),
        _tenant_fk("outbox"),
    )
    op.create_index(
        "ix_outbox_unpublished", "outbox", ["seq"], postgresql_where=sa.text("published_at IS NULL")
    )

    for table in ("orders", "order_lines", "idempotency_keys"):
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT})"
            f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )
    # orders and idempotency_keys are read by the owner-run functions below, so like the
    # identity tables they are not FORCE'd (the owner reads them there); order_lines is.
    op.execute("ALTER TABLE order_lines FORCE ROW LEVEL SECURITY")
    # The outbox is infrastructure, read across tenants by the relay; no tenant-facing query
    # touches it, so it carries tenant_id without row-level security.
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO {app_role}")
    # Wakes the relay when the inserting transaction commits (NOTIFY is delivered at commit).
    op.execute(
        "CREATE FUNCTION storefront_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS"
        " $$ BEGIN PERFORM pg_notify('storefront_outbox', ''); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox"
        " FOR EACH STATEMENT EXECUTE FUNCTION storefront_outbox_notify()"
    )

    # The worker and the cleanup job work across tenants before they know them: owner-run
    # functions that return (or delete) exactly what those jobs need.
    op.execute(
        "CREATE FUNCTION storefront_stuck_orders(before timestamptz, max_rows int)"
        " RETURNS TABLE (tenant_id uuid, id uuid)"
        " LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public, pg_temp AS"
        " $$ SELECT o.tenant_id, o.id FROM orders o WHERE o.status = 'pending'"
        " AND o.updated_at < before ORDER BY o.updated_at LIMIT max_rows $$"
    )
    op.execute(
        "CREATE FUNCTION storefront_purge_idempotency_keys(before timestamptz) RETURNS bigint"
        " LANGUAGE sql VOLATILE SECURITY DEFINER SET search_path = public, pg_temp AS"
        " $$ WITH gone AS (DELETE FROM idempotency_keys WHERE expires_at < least(before, now())"
        " AND status = 'completed' RETURNING 1) SELECT count(*) FROM gone $$"
    )
    for signature in (
        "storefront_stuck_orders(timestamptz, int)",
        "storefront_purge_idempotency_keys(timestamptz)",
    ):
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION {signature} TO {app_role}")


def downgrade() -> None:
    op.execute("DROP FUNCTION storefront_purge_idempotency_keys(timestamptz)")
    op.execute("DROP FUNCTION storefront_stuck_orders(timestamptz, int)")
    op.execute("DROP TRIGGER outbox_notify ON outbox")
    op.execute("DROP FUNCTION storefront_outbox_notify()")
    op.drop_table("outbox")
    op.drop_table("idempotency_keys")
    op.drop_table("order_lines")
    op.drop_table("orders")
