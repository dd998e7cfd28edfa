"""Feature flags and per-tenant overrides (operator configuration: not tenant-scoped, no RLS)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class FlagRecord:
    key: str
    description: str
    enabled: bool
    rollout_buckets: int
    updated_at: datetime
    overrides: dict[uuid.UUID, bool]


_COLUMNS = "key, description, enabled, rollout_buckets, updated_at"


def _record(row: Any, overrides: dict[uuid.UUID, bool]) -> FlagRecord:
    return FlagRecord(row[0], row[1], row[2], row[3], row[4], overrides)


class FlagRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def all(self) -> list[FlagRecord]:
        """Every flag with its overrides: two queries, whatever the number of flags."""
        rows = await self._conn.fetch(f"SELECT {_COLUMNS} FROM feature_flags ORDER BY key")
        overrides = await self._conn.fetch(
            "SELECT flag_key, tenant_id, value FROM feature_flag_overrides"
        )
        forced: dict[str, dict[uuid.UUID, bool]] = {}
        for flag_key, tenant_id, value in overrides:
            forced.setdefault(flag_key, {})[tenant_id] = value
        return [_record(row, forced.get(row[0], {})) for row in rows]

    async def get(self, key: str) -> FlagRecord | None:
        row = await self._conn.fetchrow(f"SELECT {_COLUMNS} FROM feature_flags WHERE key = $1", key)
        if row is None:
            return None
        overrides = await self._conn.fetch(
            "SELECT tenant_id, value FROM feature_flag_overrides WHERE flag_key = $1", key
        )
        return _record(row, {o[0]: o[1] for o in overrides})

    async def upsert(
        self,
        key: str,
        enabled: bool | None,
        rollout_buckets: int | None,
        description: str | None,
        at: datetime,
    ) -> None:
        """Create the flag (off, 0 buckets, unless told otherwise) or change the fields given;
        the row is locked by the statement, so concurrent operators do not lose updates."""
        await self._conn.execute(
            "INSERT INTO feature_flags (key, description, enabled, rollout_buckets, updated_at)"
            " VALUES ($1, COALESCE($2, ''), COALESCE($3, false), COALESCE($4, 0), $5)"
            " ON CONFLICT (key) DO UPDATE SET"
            " description = COALESCE($2, feature_flags.description),"
            " enabled = COALESCE($3, feature_flags.enabled),"
            " rollout_buckets = COALESCE($4, feature_flags.rollout_buckets),"
            " updated_at = $5",
            key,
            description,
            enabled,
            rollout_buckets,
            at,
        )

    async def set_override(self, key: str, tenant_id: uuid.UUID, value: bool, at: datetime) -> None:
        await self._conn.execute(
            "INSERT INTO feature_flag_overrides (flag_key, tenant_id, value, updated_at)"
            " VALUES ($1, $2, $3, $4) ON CONFLICT (flag_key, tenant_id)"
            " DO UPDATE SET value = $3, updated_at = $4",
            key,
            tenant_id,
            value,
            at,
        )

    async def clear_override(self, key: str, tenant_id: uuid.UUID) -> bool:
        status: str = await self._conn.execute(
            "DELETE FROM feature_flag_overrides WHERE flag_key = $1 AND tenant_id = $2",
            key,
            tenant_id,
        )
        return status != "DELETE 0"
