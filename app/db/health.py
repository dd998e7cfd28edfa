"""Background health monitor: WAL positions, replica lag, and the breakers' half-open probes."""

from __future__ import annotations

import asyncio
import contextlib
import time

import structlog

from app.core.errors import DatabaseBusy, DatabaseUnavailable
from app.db.nodes import DatabaseNode

log = structlog.get_logger(__name__)

_MIN_PROBE_SECONDS = 1.0  # a probe may take at least this long, whatever the interval
_PRIMARY_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint"
_REPLICA_SQL = """
SELECT pg_wal_lsn_diff(pg_last_wal_replay_lsn(), '0/0')::bigint,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8
"""


class HealthMonitor:
    def __init__(
        self, primary: DatabaseNode, replicas: list[DatabaseNode], interval: float
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.check_once()
        self._task = asyncio.create_task(self._run(), name="db-health-monitor")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check_once()
            except Exception:  # the monitor must outlive any single bad tick
                log.exception("db.health.tick_failed")

    async def check_once(self) -> None:
        # The primary first (replica lag is measured against its position), but bounded, so a
        # hung primary cannot freeze what we know about the replicas.
        await self._bounded_probe(self.primary)
        await asyncio.gather(*(self._bounded_probe(node) for node in self.replicas))

    async def _bounded_probe(self, node: DatabaseNode) -> None:
        try:
            async with asyncio.timeout(max(self.interval, _MIN_PROBE_SECONDS)):
                await self._probe(node)
        except TimeoutError as error:  # raised here, outside _probe: record it the same way
            if node.health.reachable is not False:
                log.warning("db.health.unreachable", node=node.name, error="probe timed out")
            node.breaker.record(error)  # a hung server is an unavailable one
            await node.mark_unreachable(error)

    async def _probe(self, node: DatabaseNode) -> None:
        health = node.health
        try:
            # Bounded by the connect and command timeouts of the engine.
            async with node.connection(probe=True) as fairy:
                driver = fairy.driver_connection
                assert driver is not None
                if node is self.primary:
                    health.lsn = await driver.fetchval(_PRIMARY_SQL)
                else:
                    lsn, replay_age = await driver.fetchrow(_REPLICA_SQL)
                    self._update_lag(node, lsn, replay_age)
        except DatabaseBusy:
            return  # every connection is busy serving requests: busy is not down
        except DatabaseUnavailable as error:
            # Breaker open and its reset timeout not elapsed: nothing was attempted.
            was, health.reachable, health.error = health.reachable, False, str(error)
            if was:
                log.warning("db.health.unreachable", node=node.name)
            return
        except Exception as error:
            if health.reachable is not False:
                log.warning("db.health.unreachable", node=node.name, error=repr(error))
            await node.mark_unreachable(error)
            return
        finally:
            health.checked_at = time.time()
        if health.reachable is not True:
            log.info("db.health.reachable", node=node.name)
        health.reachable, health.error = True, None

    def _update_lag(self, node: DatabaseNode, lsn: int | None, replay_age: float | None) -> None:
        health = node.health
        health.lsn = lsn
        primary_lsn = self.primary.health.lsn
        if lsn is None or primary_lsn is None:
            health.lag_bytes, health.lag_seconds = None, None
            return
        health.lag_bytes = max(0, primary_lsn - lsn)
        # The replay timestamp keeps ageing on an idle primary: time lag only means something
        # while there are bytes still to replay.
        health.lag_seconds = (replay_age or 0.0) if health.lag_bytes > 0 else 0.0
