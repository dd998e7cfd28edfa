"""An index for the saga's lookups of an idempotency key by its order (issue 11).

Confirming, compensating and recovering an order find its key by `(tenant_id, order_id)`; with
only the primary key `(tenant_id, key)` each of them scanned every key of the tenant (24 h of
them), so an order got slower with every order before it (the bench's orders rows halved run
after run). Built concurrently: no write to the table waits for it.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS ix_idempotency_keys_order"
            " ON idempotency_keys (tenant_id, order_id) WHERE order_id IS NOT NULL"
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.execute("SET lock_timeout = '5s'")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_idempotency_keys_order")
