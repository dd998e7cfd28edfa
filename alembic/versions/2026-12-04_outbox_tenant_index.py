"""The outbox by tenant in log order (issue 12): a replay of one tenant reads its events by
`(tenant_id, seq)`. Built concurrently, in its own revision (outside any transaction).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
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
        op.execute("SET statement_timeout = '5min'")
        op.execute("DROP INDEX CONCURRENTLY IF EXISTS ix_outbox_tenant")
        op.execute("RESET statement_timeout")
