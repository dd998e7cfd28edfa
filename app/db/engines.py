"""Async engines with tuned pools, one per server role."""

from __future__ import annotations

from typing import Any
from uuid import uuid4

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from app.settings import ConnectSettings, PoolSettings


def asyncpg_url(url: str) -> str:
    """SQLAlchemy needs the driver in the URL; accept plain postgresql:// too."""
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def _unique_statement_name() -> str:
    return f"__asyncpg_{uuid4()}__"


def create_engine(
    url: str, *, pool: PoolSettings, connect: ConnectSettings, pgbouncer: bool, role: str
) -> AsyncEngine:
    server_settings = {"application_name": f"{connect.application_name}:{role}"}
    if connect.statement_timeout_ms and not pgbouncer:
        # PgBouncer refuses startup parameters it does not track (statement_timeout among
        # them): behind it the timeout is set per transaction (transaction_settings_sql).
        server_settings["statement_timeout"] = str(connect.statement_timeout_ms)
    connect_args: dict[str, Any] = {
        # asyncpg's own connect timeout defaults to 60 s: always bound it.
        "timeout": connect.connect_timeout,
        "command_timeout": connect.command_timeout,
        "server_settings": server_settings,
        "ssl": connect.ssl,
    }
    if pgbouncer:
        # Transaction pooling moves us between server connections: no named prepared statements
        # kept across transactions (asyncpg's cache, SQLAlchemy's cache). SQLAlchemy still names
        # the statements it prepares itself (dialect start-up queries): unique names, so two
        # processes' `__asyncpg_stmt_1__` never meet on one server session.
        connect_args |= {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": _unique_statement_name,
        }
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


def transaction_settings_sql(connect: ConnectSettings, pgbouncer: bool) -> str:
    """What a unit of work appends to its `SELECT set_config('app.tenant_id', ...)`: behind
    PgBouncer the statement timeout, scoped to the transaction (it cannot be a startup
    parameter there); otherwise nothing (the session has it from its startup parameters)."""
    if not pgbouncer or not connect.statement_timeout_ms:
        return ""
    return f", set_config('statement_timeout', '{int(connect.statement_timeout_ms)}', true)"
