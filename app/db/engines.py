"""Async engines with tuned pools, one per server role."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import ConnectSettings, PoolSettings


def asyncpg_url(url: str) -> str:
    """SQLAlchemy needs the driver in the URL; accept plain postgresql:// too."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def create_engine(
    url: str, *, pool: PoolSettings, connect: ConnectSettings, pgbouncer: bool, role: str
) -> AsyncEngine:
    server_settings = {"application_name": f"{connect.application_name}:{role}"}
    if connect.statement_timeout_ms:
        server_settings["statement_timeout"] = str(connect.statement_timeout_ms)
    connect_args: dict[str, Any] = {
        # asyncpg's own connect timeout defaults to 60 s: always bound it.
        "timeout": connect.connect_timeout,
        "command_timeout": connect.command_timeout,
        "server_settings": server_settings,
        "ssl": connect.ssl,
    }
    if pgbouncer:
        # Transaction pooling moves us between server connections: no named prepared statements.
        connect_args |= {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return create_async_engine(
        asyncpg_url(url),
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout,
        pool_recycle=pool.recycle,
        pool_pre_ping=pool.pre_ping,
        pool_use_lifo=pool.use_lifo,
        connect_args=connect_args,
    )
