from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class TenantRecord:
    id: uuid.UUID
    slug: str
    name: str
    plan: str
    created_at: datetime


_COLUMNS = "id, slug, name, plan, created_at"


class TenantRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(
        self, tenant_id: uuid.UUID, slug: str, name: str, api_version: str
    ) -> TenantRecord | None:
        """Insert; None when the slug is taken (no exception, so the transaction stays usable)."""
        row = await self._conn.fetchrow(
            f"INSERT INTO tenants (id, slug, name, api_version) VALUES ($1, $2, $3, $4)"
            f" ON CONFLICT (slug) DO NOTHING RETURNING {_COLUMNS}",
            tenant_id,
            slug,
            name,
            api_version,
        )
        return TenantRecord(*row) if row else None

    async def get(self, tenant_id: uuid.UUID) -> TenantRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE id = $1", tenant_id)
        return TenantRecord(*row) if row else None

    async def by_slug(self, slug: str) -> TenantRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE slug = $1", slug)
        return TenantRecord(*row) if row else None

    async def list(self) -> list[TenantRecord]:
        rows = await self._conn.fetch(f"SELECT {_COLUMNS} FROM tenants ORDER BY slug")
        return [TenantRecord(*row) for row in rows]
