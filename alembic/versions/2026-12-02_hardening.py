"""Hardening after the outside attack run (issue 8): durable revocations, emails unique per
tenant, rotated API keys marked, dead-lettered outbox events.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa

from alembic import context, op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    # Ended sessions, users and API keys, by id, until every access token that could name them
    # has expired. Read by every API process across tenants (ids only, no tenant data), so no
    # row-level security, like the outbox.
    op.create_table(
        "revocations",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_revocations"),
    )
    op.create_index("ix_revocations_revoked_at", "revocations", ["revoked_at"])
    op.create_index("ix_revocations_expires_at", "revocations", ["expires_at"])
    op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON revocations TO {app_role}")

    # An email may belong to users of several tenants: a tenant can no longer learn that an
    # address is registered elsewhere by trying to add it.
    op.drop_constraint("uq_users_email", "users", type_="unique")
    op.create_unique_constraint("uq_users_tenant_id_email", "users", ["tenant_id", "email"])
    op.create_index("ix_users_email", "users", ["email"])

    # A rotated key keeps working for its grace period but may no longer mint keys.
    op.add_column("api_keys", sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True))

    # Events no consumer can ever apply are set aside instead of being retried forever.
    op.add_column(
        "outbox", sa.Column("dead_lettered_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column("outbox", sa.Column("last_error", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "last_error")
    op.drop_column("outbox", "dead_lettered_at")
    op.drop_column("api_keys", "rotated_at")
    op.drop_index("ix_users_email", "users")
    op.drop_constraint("uq_users_tenant_id_email", "users", type_="unique")
    op.create_unique_constraint("uq_users_email", "users", ["email"])
    op.drop_index("ix_revocations_expires_at", "revocations")
    op.drop_index("ix_revocations_revoked_at", "revocations")
    op.drop_table("revocations")
