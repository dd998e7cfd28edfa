"""A database node: one server (primary or replica) = engine + breaker + health + counters."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine.interfaces import PoolProxiedConnection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from app.core.errors import DatabaseBusy, DomainError
from app.db.breakers import DatabaseBreaker
from app.settings import PoolSettings

_PROBE_SLOT_WAIT = 0.1  # seconds the health probe queues for a connection before skipping


@dataclass
class NodeHealth:
    """What the health monitor last saw of a server."""

    reachable: bool | None = None  # None: not probed yet
    lsn: int | None = None  # primary: current WAL position; replica: last replayed position
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    checked_at: float | None = None
    error: str | None = None


class DatabaseNode:
    def __init__(
        self,
        name: str,
        role: str,
        engine: AsyncEngine,
        breaker: DatabaseBreaker,
        pool: PoolSettings,
        weight: int = 1,
    ) -> None:
        self.name = name
        self.role = role
        self.engine = engine
        self.breaker = breaker
        self.weight = weight
        self.health = NodeHealth()
        self.routed_reads = 0
        self.waiting = 0
        self.busy_rejections = 0
        self.max_checkout_seconds = 0.0
        self.pool_timeout = pool.timeout
        self.capacity = pool.size + pool.max_overflow
        self._slots = asyncio.Semaphore(self.capacity)
        self._pool_generation = 0
        self.checkout_observer: Any = None  # set by metrics: callable(node_name, seconds)
        # Idle connections kept checked out of SQLAlchemy's pool, reused without its checkout
        # and checkin (a third of a cached read's database-side CPU, docs/performance.md). Only
        # without pre-ping (which needs the pool's checkout); at most `size` of them; recycled
        # by age and after a pool-wide invalidation like the pool's own; dropped when the pool
        # is replaced.
        self._idle: deque[PoolProxiedConnection] = deque()
        self._idle_limit = 0 if pool.pre_ping else pool.size
        self._lifo = pool.use_lifo
        self._recycle = pool.recycle
        self._closed = False
        event.listen(engine.sync_engine, "connect", _stamp_connect_time)

    async def acquire(self) -> PoolProxiedConnection:
        """Check out a pooled connection for a request; fail fast unless the breaker is closed.

        Returns SQLAlchemy's pooled DBAPI connection; `.driver_connection` is the asyncpg
        connection, used directly so the hot path pays no ORM or Core overhead. Straight-line
        code rather than nested context managers: this runs on every request.

        Requests queue first on a FIFO semaphore sized `size + max_overflow`: SQLAlchemy's async
        queue lets new arrivals barge past woken waiters (who then rejoin at the back), which
        under contention starves some requests for seconds. Admitted requests always find an idle
        connection or room to open one, so only this wait is bounded by `pool.timeout`.
        """
        self.breaker.check()
        slots = self._slots
        started = time.perf_counter()
        if slots.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.pool_timeout):
                    await slots.acquire()
            except TimeoutError as error:
                self.busy_rejections += 1
                self._observe_wait(time.perf_counter() - started)
                raise DatabaseBusy(
                    f"database {self.name}: no connection within pool timeout"
                ) from error
            finally:
                self.waiting -= 1
        else:
            await slots.acquire()  # free slot: returns at once
        try:
            fairy = await self._checkout()
        except BaseException as error:
            slots.release()
            self.breaker.record(error)
            raise
        self._observe_wait(time.perf_counter() - started)
        return fairy

    async def release(self, fairy: PoolProxiedConnection, error: BaseException | None) -> None:
        """Return the connection; on error roll back or discard it and tell the breaker."""
        try:
            if error is not None:
                await _discard_broken(fairy, error)
            await self._checkin(fairy)
        finally:
            self._slots.release()
            self.breaker.record(error)

    @asynccontextmanager
    async def connection(self, *, probe: bool = False) -> AsyncIterator[PoolProxiedConnection]:
        """acquire/release as a context manager; `probe=True` for the health monitor."""
        if probe:
            try:
                # Queue like a request, briefly: when every slot stays busy the server is
                # answering, and the probe steps aside rather than hold up requests.
                async with asyncio.timeout(min(self.pool_timeout, _PROBE_SLOT_WAIT)):
                    await self._slots.acquire()
            except TimeoutError as error:
                raise DatabaseBusy(f"database {self.name}: all connections busy") from error
            try:
                with self.breaker.probe():
                    fairy = await self._checkout()
                    try:
                        yield fairy
                    except BaseException as error:
                        await _discard_broken(fairy, error)
                        raise
                    finally:
                        await self._checkin(fairy)
            finally:
                self._slots.release()
            return
        fairy = await self.acquire()
        try:
            yield fairy
        except BaseException as error:
            await self.release(fairy, error)
            raise
        await self.release(fairy, None)

    async def _checkout(self) -> PoolProxiedConnection:
        idle = self._idle
        while idle:
            fairy = idle.pop() if self._lifo else idle.popleft()
            if self._reusable(fairy):
                return fairy
            if fairy.is_valid:
                fairy.invalidate(soft=True)  # too old: the pool reconnects it on next checkout
            await _close_quietly(fairy)
        try:
            fairy = await self.engine.raw_connection()
            fairy.info["pool_generation"] = self._pool_generation
            return fairy
        except sa_exc.TimeoutError as error:
            self.busy_rejections += 1
            raise DatabaseBusy(
                f"database {self.name}: no connection within pool timeout"
            ) from error

    def _reusable(self, fairy: PoolProxiedConnection) -> bool:
        """What the pool's checkout would let through: valid, of this node's pool, not past
        `recycle`, and made after the pool's last invalidation (SQLAlchemy invalidates the whole
        pool on a disconnect: its checkout recycles every connection older than that)."""
        info = fairy.info
        age = time.monotonic() - info.get(_CONNECTED_AT, -math.inf)
        pool: Any = self.engine.sync_engine.pool
        return (
            fairy.is_valid
            and info.get("pool_generation") == self._pool_generation
            and (self._recycle < 0 or age <= self._recycle)
            and info.get(_STARTED, -math.inf) >= pool._invalidate_time
        )

    def _observe_wait(self, seconds: float) -> None:
        """A request's whole wait for a connection: queue, then pool checkout (or connect)."""
        self.max_checkout_seconds = max(self.max_checkout_seconds, seconds)
        if self.checkout_observer is not None:
            self.checkout_observer(self.name, seconds)

    async def _checkin(self, fairy: PoolProxiedConnection) -> None:
        """Return a connection. Only closing one (an overflow connection finding the pool full, an
        invalidated one, or one from a pool replaced since) awaits I/O and so needs SQLAlchemy's
        greenlet bridge; the common case is a plain queue put, done inline (nothing else runs
        between the check and the put)."""
        pool: Any = self.engine.sync_engine.pool
        # Only while the pool has opened no overflow connection: a burst's extra connections go
        # back through the pool, which closes those it has no room for (at most `size` stay).
        room = len(self._idle) < self._idle_limit and pool.overflow() <= 0
        if room and not self._closed and self._reusable(fairy):
            self._idle.append(fairy)
            return
        same_pool = fairy.info.get("pool_generation") == self._pool_generation
        if same_pool and fairy.is_valid and pool.checkedin() < pool.size():
            fairy.close()
        else:
            await greenlet_spawn(fairy.close)

    async def mark_unreachable(self, error: BaseException) -> None:
        """Route reads away at once and start over with a fresh pool."""
        if self.health.reachable is False:
            return
        self.health.reachable, self.health.error = False, repr(error)
        # A fresh pool: the idle connections died with the server (they are closed when the old
        # pool is collected); connections still checked out go back to the old one.
        self._pool_generation += 1
        await self.engine.dispose(close=False)
        await self.close_idle()

    async def close(self) -> None:
        """At shutdown: connections returned from now on go back to the pool (which disposal
        closes), not to the idle list."""
        self._closed = True
        await self.close_idle()

    async def close_idle(self) -> None:
        """Give the idle connections back to the pool (a disposal closes only those it holds)."""
        while self._idle:
            await _close_quietly(self._idle.pop())

    def pool_status(self) -> dict[str, int]:
        pool: Any = self.engine.sync_engine.pool
        idle = len(self._idle)  # checked out of the pool, but idle
        return {
            "size": pool.size(),
            "checked_out": pool.checkedout() - idle,
            "overflow": max(0, pool.overflow()),
            "idle": pool.checkedin() + idle,
            "waiting": self.waiting,
        }


_CONNECTED_AT = "storefront_connected_at"
_STARTED = "storefront_started"


def _stamp_connect_time(_: Any, record: Any) -> None:
    """Pool `connect` event: when the server connection was made, on the monotonic clock (for
    recycling idle ones) and as the pool's record has it (its wall-clock `starttime`, taken
    before connecting: what the pool compares with its invalidation time)."""
    record.info[_CONNECTED_AT] = time.monotonic()
    record.info[_STARTED] = record.starttime


async def _close_quietly(fairy: PoolProxiedConnection) -> None:
    with suppress(Exception):  # a dead connection: the pool has invalidated it
        await greenlet_spawn(fairy.close)


async def _discard_broken(fairy: PoolProxiedConnection, error: BaseException) -> None:
    """Never return a connection in an unknown state to the pool.

    After a domain error the connection is fine (at most a transaction to roll back). After
    anything else (a driver error, a cancellation mid-statement) its protocol or transaction
    state cannot be trusted, and a stale `app.tenant_id` must never serve another request: close
    it.
    """
    driver = fairy.driver_connection
    if driver is None or driver.is_closed() or not isinstance(error, DomainError):
        fairy.info.pop("tenant", None)
        await greenlet_spawn(fairy.invalidate)
        return
    if driver.is_in_transaction():
        try:
            await driver.execute("ROLLBACK")
        except Exception:
            fairy.info.pop("tenant", None)
            await greenlet_spawn(fairy.invalidate)
