"""What every tenant-owned repository shares: its pooled connection, its tenant, and the keyset
page query (ordered by created_at, id; `limit + 1` rows so the caller knows if more follow)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any


class TenantScoped:
    def __init__(self, conn: Any, tenant_id: uuid.UUID | None) -> None:
        self._conn = conn
        self._tenant_id = tenant_id

    async def _page(
        self,
        columns: str,
        table: str,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        condition: str = "",
        *arguments: Any,
    ) -> list[Any]:
        """`condition` is an extra `AND ...` whose parameters start at $5."""
        rows: list[Any] = await self._conn.fetch(
            f"SELECT {columns} FROM {table} WHERE tenant_id = $1"
            " AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::uuid))"
            f"{condition} ORDER BY created_at, id LIMIT $4",
            self._tenant_id,
            after[0] if after else None,
            after[1] if after else None,
            limit + 1,
            *arguments,
        )
        return rows
