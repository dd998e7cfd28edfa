"""Versioned events with replay (issue 12): the outbox row's payload version, the tenant's log
order for replays, and the table a replay rebuilds `sales_daily` into.

`outbox.version` has a constant default (no table rewrite): rows written by a release that does
not know the column are v1, which is what that release writes. The index on
`(tenant_id, seq)` is revision 0011, built concurrently (no write waits for it).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

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
    op.execute("ALTER TABLE outbox ADD COLUMN IF NOT EXISTS version bigint NOT NULL DEFAULT 1")
    op.execute(
        "CREATE TABLE IF NOT EXISTS sales_daily_rebuild ("
        " tenant_id uuid NOT NULL, run_id uuid NOT NULL, day date NOT NULL,"
        " product_id uuid NOT NULL, currency varchar(3) NOT NULL,"
        " units bigint NOT NULL, revenue bigint NOT NULL,"
        " CONSTRAINT pk_sales_daily_rebuild"
        " PRIMARY KEY (tenant_id, run_id, day, product_id, currency),"
        " CONSTRAINT fk_sales_daily_rebuild_tenant_id_tenants FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) ON DELETE CASCADE)"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON sales_daily_rebuild TO {app_role}")
    op.execute("ALTER TABLE sales_daily_rebuild ENABLE ROW LEVEL SECURITY")
    op.execute("ALTER TABLE sales_daily_rebuild FORCE ROW LEVEL SECURITY")
    op.execute(
        "CREATE POLICY tenant_isolation ON sales_daily_rebuild"
        f" USING (tenant_id = {CURRENT_TENANT}) WITH CHECK (tenant_id = {CURRENT_TENANT})"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '60s'")
    op.execute("DROP TABLE sales_daily_rebuild")
    op.execute("ALTER TABLE outbox DROP COLUMN version")
