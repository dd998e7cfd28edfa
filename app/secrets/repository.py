"""Queries of `tenant_secrets` (ciphertext only; plaintext never reaches the database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class SecretRecord:
    name: str
    ciphertext: bytes = field(repr=False)
    created_at: datetime
    updated_at: datetime


_COLUMNS = "name, ciphertext, created_at, updated_at"


class TenantSecretRepository(TenantScoped):
    async def put(self, name: str, ciphertext: bytes, at: datetime) -> SecretRecord:
        """Insert or replace the value; created_at stays that of the first value."""
        row = await self._conn.fetchrow(
            "INSERT INTO tenant_secrets (tenant_id, name, ciphertext, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $4) ON CONFLICT (tenant_id, name) DO UPDATE"
            " SET ciphertext = excluded.ciphertext, updated_at = excluded.updated_at"
            f" RETURNING {_COLUMNS}",
            self._tenant_id,
            name,
            ciphertext,
            at,
        )
        return SecretRecord(*row)

    async def get(self, name: str) -> SecretRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM tenant_secrets WHERE tenant_id = $1 AND name = $2",
            self._tenant_id,
            name,
        )
        return SecretRecord(*row) if row else None

    async def batch_for_update(self, after: str | None, limit: int) -> list[SecretRecord]:
        """The next `limit` secrets by name after `after`, locked until the transaction ends."""
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM tenant_secrets WHERE tenant_id = $1"
            " AND ($2::text IS NULL OR name > $2) ORDER BY name LIMIT $3 FOR UPDATE",
            self._tenant_id,
            after,
            limit,
        )
        return [SecretRecord(*row) for row in rows]

    async def set_ciphertext(self, name: str, ciphertext: bytes) -> None:
        """Re-encryption: the value is unchanged, so updated_at is too."""
        await self._conn.execute(
            "UPDATE tenant_secrets SET ciphertext = $3 WHERE tenant_id = $1 AND name = $2",
            self._tenant_id,
            name,
            ciphertext,
        )
