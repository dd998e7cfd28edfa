"""`api_version_usage`: requests per (tenant, version, day), summed over every API process."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any


class ApiUsageRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def add(self, rows: list[tuple[uuid.UUID, str, date, int, datetime]]) -> None:
        await self._conn.execute(
            "INSERT INTO api_version_usage (tenant_id, version, day, requests, last_seen_at)"
            " SELECT * FROM unnest($1::uuid[], $2::text[], $3::date[], $4::bigint[],"
            " $5::timestamptz[])"
            " ON CONFLICT (tenant_id, version, day) DO UPDATE SET"
            " requests = api_version_usage.requests + EXCLUDED.requests,"
            " last_seen_at = greatest(api_version_usage.last_seen_at, EXCLUDED.last_seen_at)",
            [r[0] for r in rows],
            [r[1] for r in rows],
            [r[2] for r in rows],
            [r[3] for r in rows],
            [r[4] for r in rows],
        )

    async def since(self, day: date, versions: list[str] | None) -> list[Any]:
        rows = await self._conn.fetch(
            "SELECT u.tenant_id, t.slug, u.version, sum(u.requests)::bigint, max(u.last_seen_at)"
            " FROM api_version_usage u JOIN tenants t ON t.id = u.tenant_id"
            " WHERE u.day >= $1 AND ($2::text[] IS NULL OR u.version = ANY($2::text[]))"
            " GROUP BY u.tenant_id, t.slug, u.version ORDER BY u.version, 4 DESC, t.slug",
            day,
            versions,
        )
        return [tuple(row) for row in rows]
