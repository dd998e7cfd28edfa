from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class ApiKeyRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    prefix: str
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None
    rotated_at: datetime | None = None


_COLUMNS = (
    "id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at,"
    " rotated_at"
)


class ApiKeyRepository(TenantScoped):
    async def add(
        self,
        key_id: uuid.UUID,
        name: str,
        prefix: str,
        secret_hash: bytes,
        scopes: list[str],
        expires_at: datetime | None,
    ) -> ApiKeyRecord:
        row = await self._conn.fetchrow(
            "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes, expires_at)"
            f" VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {_COLUMNS}",
            key_id,
            self._tenant_id,
            name,
            prefix,
            secret_hash,
            scopes,
            expires_at,
        )
        return ApiKeyRecord(*row)

    async def by_secret_hash(self, secret_hash: bytes) -> ApiKeyRecord | None:
        """Look a key up before its tenant is known: through a SECURITY DEFINER function, so
        the application role itself never reads api_keys outside its tenant."""
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM storefront_api_key_by_hash($1)", secret_hash
        )
        return ApiKeyRecord(*row) if row else None

    async def page(
        self, limit: int, after: tuple[datetime, uuid.UUID] | None
    ) -> list[ApiKeyRecord]:
        rows = await self._page(_COLUMNS, "api_keys", limit, after)
        return [ApiKeyRecord(*row) for row in rows]

    async def get(self, key_id: uuid.UUID, *, lock: bool = False) -> ApiKeyRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 AND id = $2"
            + (" FOR UPDATE" if lock else ""),
            self._tenant_id,
            key_id,
        )
        return ApiKeyRecord(*row) if row else None

    async def expire(self, key_id: uuid.UUID, at: datetime, rotated_at: datetime) -> None:
        """Bring a key's expiry forward to `at` (rotation's grace period) and mark it rotated
        (a rotated key still authenticates during the grace period but mints no keys)."""
        await self._conn.execute(
            "UPDATE api_keys SET expires_at = least(coalesce(expires_at, $3), $3),"
            " rotated_at = coalesce(rotated_at, $4) WHERE tenant_id = $1 AND id = $2",
            self._tenant_id,
            key_id,
            at,
            rotated_at,
        )

    async def touch(self, key_ids: list[uuid.UUID], at: datetime) -> None:
        await self._conn.execute(
            "UPDATE api_keys SET last_used_at = $3 WHERE tenant_id = $1 AND id = ANY($2::uuid[])"
            " AND (last_used_at IS NULL OR last_used_at < $3)",
            self._tenant_id,
            key_ids,
            at,
        )

    async def revoke(self, key_id: uuid.UUID, at: datetime) -> bool:
        status: str = await self._conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)"
            " WHERE id = $1 AND tenant_id = $2",
            key_id,
            self._tenant_id,
            at,
        )
        return status != "UPDATE 0"


@dataclass(frozen=True, slots=True)
class UserRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    email: str
    role: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: uuid.UUID
    tenant_id: uuid.UUID
    password_hash: str
    role: str


_USER_COLUMNS = "id, tenant_id, email, role, created_at, updated_at"


class UserRepository(TenantScoped):
    async def add(
        self, user_id: uuid.UUID, email: str, password_hash: str, role: str
    ) -> UserRecord | None:
        """Insert; None when the email is taken in this tenant."""
        row = await self._conn.fetchrow(
            "INSERT INTO users (id, tenant_id, email, password_hash, role)"
            " VALUES ($1, $2, $3, $4, $5)"
            f" ON CONFLICT (tenant_id, email) DO NOTHING RETURNING {_USER_COLUMNS}",
            user_id,
            self._tenant_id,
            email,
            password_hash,
            role,
        )
        return UserRecord(*row) if row else None

    async def credentials(
        self, email: str, tenant_slug: str | None = None, limit: int = 2
    ) -> list[Credentials]:
        """Before the tenant is known (login): the accounts with this email (emails are unique
        per tenant, so one per tenant), only the named tenant's when `tenant_slug` is given; the
        `limit` oldest (created_at, id), so accounts registered later under the same address
        cannot push an older one out. Through an owner-run function, see migration; tenants has
        no RLS."""
        rows = await self._conn.fetch(
            "SELECT u.id, u.tenant_id, u.password_hash, u.role"
            " FROM storefront_user_by_email($1) AS u"
            " WHERE $2::text IS NULL OR u.tenant_id = (SELECT id FROM tenants WHERE slug = $2)"
            " ORDER BY u.created_at, u.id LIMIT $3",
            email,
            tenant_slug,
            limit,
        )
        return [Credentials(*row) for row in rows]

    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> UserRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2"
            + (" FOR UPDATE" if lock else ""),
            self._tenant_id,
            user_id,
        )
        return UserRecord(*row) if row else None

    async def by_email(self, email: str, *, lock: bool = False) -> UserRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email = $2"
            + (" FOR UPDATE" if lock else ""),
            self._tenant_id,
            email,
        )
        return UserRecord(*row) if row else None

    async def lock_password_hash(self, user_id: uuid.UUID) -> str | None:
        """The user's current password hash, row locked (FOR UPDATE) until the transaction
        ends; None when the user no longer exists. Login issues its session under this lock,
        so a concurrent password change or deletion either sees the new session or runs first
        (and login then sees the change)."""
        row = await self._conn.fetchrow(
            "SELECT password_hash FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
            self._tenant_id,
            user_id,
        )
        return str(row[0]) if row else None

    async def page(self, limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[UserRecord]:
        rows = await self._page(_USER_COLUMNS, "users", limit, after)
        return [UserRecord(*row) for row in rows]

    async def lock_owners(self) -> list[uuid.UUID]:
        """Lock the tenant's owners: concurrent demotions then see each other's result, so the
        last owner cannot be removed by two requests at once."""
        rows = await self._conn.fetch(
            "SELECT id FROM users WHERE tenant_id = $1 AND role = 'owner' ORDER BY id FOR UPDATE",
            self._tenant_id,
        )
        return [row[0] for row in rows]

    async def update(
        self, user_id: uuid.UUID, at: datetime, role: str | None, password_hash: str | None
    ) -> UserRecord | None:
        row = await self._conn.fetchrow(
            "UPDATE users SET role = coalesce($3, role),"
            " password_hash = coalesce($4, password_hash), updated_at = $5"
            f" WHERE tenant_id = $1 AND id = $2 RETURNING {_USER_COLUMNS}",
            self._tenant_id,
            user_id,
            role,
            password_hash,
            at,
        )
        return UserRecord(*row) if row else None

    async def set_password_hash(self, user_id: uuid.UUID, password_hash: str) -> None:
        await self._conn.execute(
            "UPDATE users SET password_hash = $3 WHERE tenant_id = $1 AND id = $2",
            self._tenant_id,
            user_id,
            password_hash,
        )

    async def delete(self, user_id: uuid.UUID) -> bool:
        status: str = await self._conn.execute(
            "DELETE FROM users WHERE tenant_id = $1 AND id = $2", self._tenant_id, user_id
        )
        return status != "DELETE 0"


@dataclass(frozen=True, slots=True)
class RefreshTokenRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    user_id: uuid.UUID
    family_id: uuid.UUID
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


_REFRESH_COLUMNS = "id, tenant_id, user_id, family_id, expires_at, used_at, revoked_at"


class RefreshTokenRepository(TenantScoped):
    async def add(
        self,
        user_id: uuid.UUID,
        family_id: uuid.UUID,
        token_hash: bytes,
        expires_at: datetime,
    ) -> None:
        await self._conn.execute(
            "INSERT INTO refresh_tokens (id, tenant_id, user_id, family_id, token_hash,"
            " expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
            uuid.uuid4(),
            self._tenant_id,
            user_id,
            family_id,
            token_hash,
            expires_at,
        )

    async def by_hash(self, token_hash: bytes) -> RefreshTokenRecord | None:
        """Before the tenant is known: through an owner-run function, see migration."""
        row = await self._conn.fetchrow(
            f"SELECT {_REFRESH_COLUMNS} FROM storefront_refresh_token_by_hash($1)", token_hash
        )
        return RefreshTokenRecord(*row) if row else None

    async def use(self, token_id: uuid.UUID, at: datetime) -> bool:
        """Mark a live token used; False when it was already used, revoked or expired (the
        single-use check and the mark are one statement, so two refreshes cannot both win)."""
        status: str = await self._conn.execute(
            "UPDATE refresh_tokens SET used_at = $3 WHERE tenant_id = $1 AND id = $2"
            " AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
            self._tenant_id,
            token_id,
            at,
        )
        return status != "UPDATE 0"

    async def revoke_family(self, family_id: uuid.UUID, at: datetime) -> None:
        await self._conn.execute(
            "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, $3)"
            " WHERE tenant_id = $1 AND family_id = $2",
            self._tenant_id,
            family_id,
            at,
        )

    async def revoke_user(self, user_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        """Revoke every family of the user; returns the families' ids."""
        rows = await self._conn.fetch(
            "UPDATE refresh_tokens SET revoked_at = coalesce(revoked_at, $3)"
            " WHERE tenant_id = $1 AND user_id = $2 RETURNING family_id",
            self._tenant_id,
            user_id,
            at,
        )
        return sorted({row[0] for row in rows})


class RevocationRepository:
    """Durable tombstones (no tenant: ids only, read by every process; no row-level security).
    `revoked_at` is the database's time, so the re-read cursor compares database time with
    database time; `expires_at` is the writer's (container) clock, like every token's `exp`."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, ids: list[uuid.UUID], expires_at: datetime) -> None:
        await self._conn.execute(
            "INSERT INTO revocations (id, revoked_at, expires_at)"
            " SELECT id, now(), $2 FROM unnest($1::uuid[]) AS id"
            " ON CONFLICT (id) DO UPDATE SET revoked_at = now(),"
            " expires_at = greatest(revocations.expires_at, excluded.expires_at)",
            ids,
            expires_at,
        )

    async def live(self, at: datetime) -> tuple[datetime, list[tuple[uuid.UUID, datetime]]]:
        """The database's now() and every revocation that has not expired at `at`."""
        return await self._read("expires_at > $1", at)

    async def since(self, after: datetime) -> tuple[datetime, list[tuple[uuid.UUID, datetime]]]:
        """The database's now() and the revocations recorded after `after` (database time)."""
        return await self._read("revoked_at > $1", after)

    async def _read(
        self, condition: str, argument: datetime
    ) -> tuple[datetime, list[tuple[uuid.UUID, datetime]]]:
        row = await self._conn.fetchrow(
            "SELECT now(), coalesce(array_agg(id), '{}'), coalesce(array_agg(expires_at), '{}')"
            f" FROM revocations WHERE {condition}",
            argument,
        )
        return row[0], list(zip(row[1], row[2], strict=True))

    async def purge(self, at: datetime) -> int:
        status: str = await self._conn.execute("DELETE FROM revocations WHERE expires_at <= $1", at)
        return int(status.split()[-1])


@dataclass(frozen=True, slots=True)
class WsTicketRecord:
    principal_kind: str
    principal_id: uuid.UUID
    role: str | None
    scopes: list[str]
    expires_at: datetime


class WsTicketRepository(TenantScoped):
    """Single-use WebSocket tickets: a SHA-256 of the secret per row."""

    async def add(self, token_hash: bytes, ticket: WsTicketRecord) -> None:
        await self._conn.execute(
            "INSERT INTO ws_tickets (token_hash, tenant_id, principal_kind, principal_id, role,"
            " scopes, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            token_hash,
            self._tenant_id,
            ticket.principal_kind,
            ticket.principal_id,
            ticket.role,
            ticket.scopes,
            ticket.expires_at,
        )

    async def purge_expired(self, now: datetime) -> None:
        await self._conn.execute(
            "DELETE FROM ws_tickets WHERE tenant_id = $1 AND expires_at < $2",
            self._tenant_id,
            now,
        )

    async def redeem(self, token_hash: bytes) -> WsTicketRecord | None:
        """Take the ticket: the row is deleted, so a second use finds nothing (one statement,
        atomic: two concurrent uses cannot both get it)."""
        row = await self._conn.fetchrow(
            "DELETE FROM ws_tickets WHERE tenant_id = $1 AND token_hash = $2"
            " RETURNING principal_kind, principal_id, role, scopes, expires_at",
            self._tenant_id,
            token_hash,
        )
        return WsTicketRecord(*row) if row else None
