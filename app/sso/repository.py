"""Queries of the SSO tables: the tenant's provider configuration, linked external subjects and
the one-use records of logins in flight (all tenant-scoped, under row-level security)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class SsoConfigRecord:
    tenant_id: uuid.UUID
    issuer: str
    client_id: str
    allowed_domains: list[str]
    default_role: str
    jit_provisioning: bool
    password_login_disabled: bool
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class SsoLoginRecord:
    tenant_id: uuid.UUID
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)
    issuer: str
    created_at: datetime


_CONFIG_COLUMNS = (
    "tenant_id, issuer, client_id, allowed_domains, default_role, jit_provisioning,"
    " password_login_disabled, created_at, updated_at"
)


class SsoRepository(TenantScoped):
    async def config(self) -> SsoConfigRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_CONFIG_COLUMNS} FROM sso_configs WHERE tenant_id = $1", self._tenant_id
        )
        return SsoConfigRecord(*row) if row else None

    async def put_config(
        self,
        issuer: str,
        client_id: str,
        allowed_domains: list[str],
        default_role: str,
        jit_provisioning: bool,
        password_login_disabled: bool,
        at: datetime,
    ) -> SsoConfigRecord:
        row = await self._conn.fetchrow(
            "INSERT INTO sso_configs (tenant_id, issuer, client_id, allowed_domains,"
            " default_role, jit_provisioning, password_login_disabled, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) ON CONFLICT (tenant_id) DO UPDATE SET"
            " issuer = excluded.issuer, client_id = excluded.client_id,"
            " allowed_domains = excluded.allowed_domains, default_role = excluded.default_role,"
            " jit_provisioning = excluded.jit_provisioning,"
            " password_login_disabled = excluded.password_login_disabled,"
            f" updated_at = excluded.updated_at RETURNING {_CONFIG_COLUMNS}",
            self._tenant_id,
            issuer,
            client_id,
            allowed_domains,
            default_role,
            jit_provisioning,
            password_login_disabled,
            at,
        )
        return SsoConfigRecord(*row)

    async def password_login_disabled(self) -> bool:
        """Whether the tenant turned password login off. On a schema before revision 0014 (the
        expand/contract window still accepts 0012, app/ops/service.py OLDEST_SCHEMA) there is
        no SSO table, and so no tenant that turned it off."""
        try:
            value = await self._conn.fetchval(
                "SELECT password_login_disabled FROM sso_configs WHERE tenant_id = $1",
                self._tenant_id,
            )
        except asyncpg.UndefinedTableError:
            return False
        return bool(value)

    async def add_login(
        self,
        state_hash: bytes,
        binding_hash: bytes,
        nonce: str,
        code_verifier: str,
        issuer: str,
        at: datetime,
        expires_at: datetime,
    ) -> None:
        """Record a started login; the tenant's expired ones are deleted on the way."""
        await self._conn.execute(
            "WITH gone AS (DELETE FROM sso_logins WHERE tenant_id = $1 AND expires_at <= $6)"
            " INSERT INTO sso_logins (state_hash, tenant_id, binding_hash, nonce, code_verifier,"
            " issuer, created_at, expires_at) VALUES ($2, $1, $3, $4, $5, $7, $6, $8)",
            self._tenant_id,
            state_hash,
            binding_hash,
            nonce,
            code_verifier,
            at,
            issuer,
            expires_at,
        )

    async def take_login(
        self, state_hash: bytes, binding_hash: bytes, at: datetime
    ) -> SsoLoginRecord | None:
        """The login with this state, started by this browser and not expired, deleted in the
        same statement (one use: a second callback with the same state finds nothing). A wrong
        browser leaves it in place, so a forged callback cannot burn someone's login."""
        row = await self._conn.fetchrow(
            "DELETE FROM sso_logins WHERE tenant_id = $1 AND state_hash = $2"
            " AND binding_hash = $3 AND expires_at > $4"
            " RETURNING tenant_id, nonce, code_verifier, issuer, created_at",
            self._tenant_id,
            state_hash,
            binding_hash,
            at,
        )
        return SsoLoginRecord(*row) if row else None

    async def linked_user(self, issuer: str, subject: str) -> uuid.UUID | None:
        user_id: uuid.UUID | None = await self._conn.fetchval(
            "SELECT user_id FROM sso_identities WHERE tenant_id = $1 AND issuer = $2"
            " AND subject = $3",
            self._tenant_id,
            issuer,
            subject,
        )
        return user_id

    async def is_linked(self, user_id: uuid.UUID) -> bool:
        return bool(
            await self._conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM sso_identities WHERE tenant_id = $1"
                " AND user_id = $2)",
                self._tenant_id,
                user_id,
            )
        )

    async def link(self, issuer: str, subject: str, user_id: uuid.UUID) -> bool:
        """Link (issuer, subject) to the user; False when either is linked already (a
        concurrent login won)."""
        status: str = await self._conn.execute(
            "INSERT INTO sso_identities (tenant_id, issuer, subject, user_id)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            self._tenant_id,
            issuer,
            subject,
            user_id,
        )
        return status != "INSERT 0 0"
