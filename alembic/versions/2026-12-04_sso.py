"""Single sign-on for tenant staff (issue 13): each tenant's OpenID Connect provider, the
external subjects linked to users, and the one-use records of logins in flight. New tables
only (expand); every one is tenant data under forced row-level security. The client secret is
not here: it is a tenant secret (`tenant_secrets`, name `sso_client_secret`), encrypted at rest
and re-encrypted by `storefront secrets rotate-key` like any other.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-04
"""

from __future__ import annotations

from alembic import context, op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

CURRENT_TENANT = "NULLIF(current_setting('app.tenant_id', true), '')::uuid"
TABLES = ("sso_configs", "sso_identities", "sso_logins")


def upgrade() -> None:
    app_role = context.config.attributes["app_role"]
    op.execute("SET LOCAL lock_timeout = '5s'")
    op.execute("SET LOCAL statement_timeout = '30s'")
    op.execute(
        "CREATE TABLE sso_configs ("
        " tenant_id uuid NOT NULL,"
        " issuer varchar(500) NOT NULL,"
        " client_id varchar(255) NOT NULL,"
        " allowed_domains text[] NOT NULL,"
        " default_role varchar(20) NOT NULL,"
        " jit_provisioning boolean NOT NULL DEFAULT false,"
        " password_login_disabled boolean NOT NULL DEFAULT false,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " updated_at timestamptz NOT NULL DEFAULT now(),"
        " CONSTRAINT pk_sso_configs PRIMARY KEY (tenant_id),"
        " CONSTRAINT fk_sso_configs_tenant_id_tenants FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) ON DELETE CASCADE,"
        " CONSTRAINT ck_sso_configs_default_role_known"
        " CHECK (default_role IN ('admin', 'member', 'viewer')))"
    )
    # One external subject per user and one user per subject: a user linked to (issuer, sub)
    # is never matched by email again, so no other provider or subject can take it over.
    op.execute(
        "CREATE TABLE sso_identities ("
        " tenant_id uuid NOT NULL,"
        " issuer varchar(500) NOT NULL,"
        " subject varchar(255) NOT NULL,"
        " user_id uuid NOT NULL,"
        " created_at timestamptz NOT NULL DEFAULT now(),"
        " CONSTRAINT pk_sso_identities PRIMARY KEY (tenant_id, issuer, subject),"
        " CONSTRAINT uq_sso_identities_tenant_id_user_id UNIQUE (tenant_id, user_id),"
        " CONSTRAINT fk_sso_identities_user_id_users FOREIGN KEY (user_id)"
        " REFERENCES users (id) ON DELETE CASCADE,"
        " CONSTRAINT fk_sso_identities_tenant_id_tenants FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) ON DELETE CASCADE)"
    )
    # A login between /start and /callback: found by the hash of its `state`, bound to the
    # browser by the hash of its cookie, deleted when used (one use) or past expires_at.
    op.execute(
        "CREATE TABLE sso_logins ("
        " state_hash bytea NOT NULL,"
        " tenant_id uuid NOT NULL,"
        " binding_hash bytea NOT NULL,"
        " nonce text NOT NULL,"
        " code_verifier text NOT NULL,"
        " issuer varchar(500) NOT NULL,"
        " created_at timestamptz NOT NULL,"
        " expires_at timestamptz NOT NULL,"
        " CONSTRAINT pk_sso_logins PRIMARY KEY (state_hash),"
        " CONSTRAINT fk_sso_logins_tenant_id_tenants FOREIGN KEY (tenant_id)"
        " REFERENCES tenants (id) ON DELETE CASCADE)"
    )
    op.execute("CREATE INDEX ix_sso_logins_tenant_expires ON sso_logins (tenant_id, expires_at)")
    op.execute("CREATE INDEX ix_sso_identities_user_id ON sso_identities (user_id)")
    for table in TABLES:
        op.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON {table} TO {app_role}")
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY tenant_isolation ON {table} USING (tenant_id = {CURRENT_TENANT})"
            f" WITH CHECK (tenant_id = {CURRENT_TENANT})"
        )


def downgrade() -> None:
    for table in reversed(TABLES):
        op.execute(f"DROP TABLE {table}")
