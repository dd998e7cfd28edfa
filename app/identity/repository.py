from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


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


_COLUMNS = "id, tenant_id, name, prefix, scopes, created_at, expires_at, revoked_at, last_used_at"


class ApiKeyRepository:
    def __init__(self, conn: Any, tenant_id: uuid.UUID | None) -> None:
        self._conn = conn
        self._tenant_id = tenant_id

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

    async def list(self) -> list[ApiKeyRecord]:
        rows = await self._conn.fetch(
            f"SELECT {_COLUMNS} FROM api_keys WHERE tenant_id = $1 ORDER BY created_at, id",
            self._tenant_id,
        )
        return [ApiKeyRecord(*row) for row in rows]

    async def revoke(self, key_id: uuid.UUID, at: datetime) -> bool:
        status: str = await self._conn.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, $3)"
            " WHERE id = $1 AND tenant_id = $2",
            key_id,
            self._tenant_id,
            at,
        )
        return status != "UPDATE 0"
