"""The database facade the container builds: nodes, router, health monitor, lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from app.db.breakers import DatabaseBreaker
from app.db.engines import create_engine, transaction_settings_sql
from app.db.health import HealthMonitor
from app.db.nodes import DatabaseNode
from app.db.routing import ReplicaRouter
from app.settings import DatabaseSettings


class Database:
    def __init__(self, settings: DatabaseSettings) -> None:
        self.settings = settings
        # Appended to every transaction's tenant SET (behind PgBouncer: its statement timeout).
        self.transaction_settings = transaction_settings_sql(settings.connect, settings.pgbouncer)
        self.primary = _node(settings, "primary", "primary", settings.primary.url, 1)
        self.replicas = [
            _node(settings, f"replica-{i}", "replica", replica.url, replica.weight)
            for i, replica in enumerate(settings.replicas, start=1)
        ]
        self.router = ReplicaRouter(self.primary, self.replicas, settings.routing)
        self.monitor = HealthMonitor(
            self.primary, self.replicas, settings.routing.health_interval_seconds
        )

    @property
    def nodes(self) -> list[DatabaseNode]:
        return [self.primary, *self.replicas]

    async def start(self) -> None:
        await self.monitor.start()

    async def close(self) -> None:
        await self.monitor.stop()
        for node in self.nodes:
            await node.close()
        await asyncio.gather(*(node.engine.dispose() for node in self.nodes))


def _node(settings: DatabaseSettings, name: str, role: str, url: str, weight: int) -> DatabaseNode:
    pool = settings.pool if role == "primary" else settings.replica_pool
    engine = create_engine(
        url, pool=pool, connect=settings.connect, pgbouncer=settings.pgbouncer, role=name
    )
    breaker = DatabaseBreaker(name, settings.breaker)
    return DatabaseNode(name, role, engine, breaker, pool, weight)


async def database_lifecycle(database: Database) -> AsyncIterator[Database]:
    """dependency-injector Resource: starts the health monitor; disposes engines on shutdown.

    `Database` itself is a plain Singleton (building engines does not connect), so factories that
    depend on it stay synchronous: an async Resource in their graph would make every injection
    return an awaitable.
    """
    await database.start()
    try:
        yield database
    finally:
        await database.close()
