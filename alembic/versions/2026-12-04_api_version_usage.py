"""Requests per tenant, API version and day (issue 12): `storefront api usage --deprecated`
tells an operator whom to contact before a version's sunset. Operator telemetry, like `tenants`:
no row-level security (the API's processes write every tenant's counts in one statement), and
no foreign key to `tenants` (a flush must never queue behind a lock on tenants; the report joins
tenants, so a deleted tenant's rows drop out of it).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import context, op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '30s'")
    op.execute(
        "CREATE TABLE api_version_usage ("
        " tenant_id uuid NOT NULL,"
        " version varchar(10) NOT NULL,"
        " day date NOT NULL,"
        " requests bigint NOT NULL,"
        " last_seen_at timestamptz NOT NULL,"
        " PRIMARY KEY (tenant_id, version, day))"
    )
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON api_version_usage TO {app_role}")


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("DROP TABLE api_version_usage")
