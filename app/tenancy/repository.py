"""Tenants' traffic configuration: plan, overrides, emergency override (the tenants table; no
row-level security). Used through a unit of work (`uow.tenant_config`)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

Layer = Literal["overrides", "emergency"]
_LAYERS = ("overrides", "emergency")


@dataclass(frozen=True, slots=True)
class TenantConfigRecord:
    id: uuid.UUID
    slug: str
    plan: str
    overrides: dict[str, Any]
    emergency: dict[str, Any]
    config_updated_at: datetime
    api_version: str | None = None  # the API version its requests get without a header


_COLUMNS = "id, slug, plan, overrides, emergency, config_updated_at, api_version"


def _document(value: Any) -> dict[str, Any]:
    # The engine's codec decodes jsonb; a plain asyncpg connection hands back text.
    if isinstance(value, str):
        value = json.loads(value)
    return value if isinstance(value, dict) else {}


def _record(row: Any) -> TenantConfigRecord:
    return TenantConfigRecord(
        row[0], row[1], row[2], _document(row[3]), _document(row[4]), row[5], row[6]
    )


class TenantConfigRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def all(self) -> tuple[datetime, list[TenantConfigRecord]]:
        """Every tenant's configuration and the database time of the read (one query)."""
        return await self._read(f"SELECT {_COLUMNS}, now() FROM tenants")

    async def since(self, after: datetime) -> tuple[datetime, list[TenantConfigRecord]]:
        """Tenants whose configuration changed after `after` (database time), and now()."""
        return await self._read(
            f"SELECT {_COLUMNS}, now() FROM tenants WHERE config_updated_at > $1", after
        )

    async def get(self, tenant_id: uuid.UUID) -> TenantConfigRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE id = $1", tenant_id)
        return _record(row) if row else None

    async def by_slug(self, slug: str) -> TenantConfigRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM tenants WHERE slug = $1", slug)
        return _record(row) if row else None

    async def set_api_version(
        self, tenant_id: uuid.UUID, version: str
    ) -> TenantConfigRecord | None:
        return await self._set(tenant_id, "api_version", version)

    async def set_plan(self, tenant_id: uuid.UUID, plan: str) -> TenantConfigRecord | None:
        return await self._set(tenant_id, "plan", plan)

    async def _set(
        self, tenant_id: uuid.UUID, column: str, value: str
    ) -> TenantConfigRecord | None:
        assert column in ("plan", "api_version")  # a column name, never input
        row = await self._conn.fetchrow(
            f"UPDATE tenants SET {column} = $2, config_updated_at = now() WHERE id = $1"
            f" RETURNING {_COLUMNS}",
            tenant_id,
            value,
        )
        return _record(row) if row else None

    async def merge(
        self, tenant_id: uuid.UUID, layer: Layer, values: dict[str, Any], remove: list[str]
    ) -> TenantConfigRecord | None:
        """Set `values` and drop the keys in `remove` in one layer (a single atomic UPDATE)."""
        if layer not in _LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
        row = await self._conn.fetchrow(
            f"UPDATE tenants SET {layer} = ({layer} - $3::text[]) || $2::jsonb,"
            f" config_updated_at = now() WHERE id = $1 RETURNING {_COLUMNS}",
            tenant_id,
            json.dumps(values),
            remove,
        )
        return _record(row) if row else None

    async def clear(self, tenant_id: uuid.UUID, layer: Layer) -> TenantConfigRecord | None:
        if layer not in _LAYERS:
            raise ValueError(f"unknown layer {layer!r}")
        row = await self._conn.fetchrow(
            f"UPDATE tenants SET {layer} = '{{}}'::jsonb, config_updated_at = now()"
            f" WHERE id = $1 RETURNING {_COLUMNS}",
            tenant_id,
        )
        return _record(row) if row else None

    async def _read(self, sql: str, *args: Any) -> tuple[datetime, list[TenantConfigRecord]]:
        rows = await self._conn.fetch(sql, *args)
        if rows:
            return rows[0][-1], [_record(row) for row in rows]  # now(), after the columns
        return await self._conn.fetchval("SELECT now()"), []
