"""Tenants are pinned to an API version (issue 12): the tenants that exist keep the contract they
were built against (2026-11-23); new tenants get the newest at sign-up (app/tenants/service.py).

Adding a column with a constant default rewrites nothing (PostgreSQL 11+).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '30s'")
    op.execute(
        "ALTER TABLE tenants ADD COLUMN api_version varchar(10) NOT NULL DEFAULT '2026-11-23'"
    )


def downgrade() -> None:
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("ALTER TABLE tenants DROP COLUMN api_version")
