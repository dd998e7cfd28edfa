"""Operator queries against one server (not tenant data, so no unit of work)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ServerCapacity:
    max_connections: int
    reserved: int  # superuser_reserved_connections
    in_use: int  # client backends now


class OpsRepository:
    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def schema_revision(self) -> str | None:
        revision: str | None = await self._conn.fetchval("SELECT version_num FROM alembic_version")
        return revision

    async def capacity(self) -> ServerCapacity:
        row = await self._conn.fetchrow(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend')::int"
        )
        return ServerCapacity(*row)
