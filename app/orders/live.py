"""Live order status: one LISTEN connection per process fans committed status changes out to
every socket of that process that watches the order (or its tenant).

The trigger on `orders` (migration 0015) writes an `order_events` row in the transaction of the
change and NOTIFYs `storefront_order_events` with its ids (tenant, order, seq), delivered at
commit. `OrderEventHub` collects notifications and, in one task (so delivery keeps their
order), reads the announced rows of each tenant that has watchers through that tenant's unit of
work (row-level security; on the primary, which the replica may trail), then offers each event
to the tenant's `Subscription`s. Nothing is read for tenants nobody here watches.

A `Subscription` is one socket's view: subscribed first, then the backlog is read from the
database (`after`), then live events, deduplicated by sequence, so there is no gap and no
duplicate between the two. Its buffer is bounded (`websocket.queue_size` live messages on top
of what a catch-up read): past it the client is too slow (`SlowConsumer`). When the LISTEN
connection drops, the hub reconnects and every subscription catches up from the database
(what was committed while nobody listened).

Sequences: per order, `seq` counts from 1 without gaps in commit order (the change holds the
order's row lock). The tenant stream resumes by `position` (an identity): exact unless two of
the tenant's transactions commit in the other order than they took their positions while the
client is away (docs/decisions.md); watch one order for an exact resume.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

import asyncpg
import structlog

from app.core.errors import NotFound, ServiceUnavailable
from app.db.uow import UnitOfWorkFactory, read
from app.orders.repository import OrderEventRecord

log = structlog.get_logger(__name__)
CHANNEL = "storefront_order_events"
_DEDUPE_ORDERS = 10_000  # last sequence remembered per order, per tenant-wide socket


class LiveUnavailable(ServiceUnavailable):
    code = "websocket.unavailable"
    title = "Live status unavailable"


class OrderNotWatchable(NotFound):
    code = "orders.not_found"
    title = "Order not found"


class SlowConsumer(Exception):
    """The client does not take messages as fast as they come (its buffer is full)."""


class HubClosing(Exception):
    """The process is shutting down."""


class LiveObserver(Protocol):
    """Where the hub reports (the container passes the process's metrics)."""

    def live_socket(self, delta: int) -> None: ...

    def live_dropped(self, reason: str) -> None: ...

    def live_listening(self, listening: bool) -> None: ...


class Unobserved:
    def live_socket(self, delta: int) -> None:
        pass

    def live_dropped(self, reason: str) -> None:
        pass

    def live_listening(self, listening: bool) -> None:
        pass


Reader = Callable[[uuid.UUID | None, int], Any]  # (order or None, after) -> awaitable events


class Subscription:
    """One socket's events, in order: backlog first, then live ones, each once."""

    def __init__(
        self,
        tenant_id: uuid.UUID,
        order_id: uuid.UUID | None,
        after: int,
        queue_size: int,
        page: int,
        read_after: Reader,
    ) -> None:
        self.tenant_id = tenant_id
        self.order_id = order_id
        self._read_after = read_after
        self._queue_size = queue_size
        self._page = page
        self._pending: deque[OrderEventRecord] = deque()
        self._capacity = queue_size  # live events past it: too slow
        # Live events wait here while the backlog is read (the start, after a LISTEN gap).
        self._held: list[OrderEventRecord] | None = []
        self._stale = True
        self._last_seq: dict[uuid.UUID, int] = {}
        self.cursor = after  # per order: its last seq; tenant-wide: the last position
        if order_id is not None:
            self._last_seq[order_id] = after
        self._wake = asyncio.Event()
        self.overflowed = False
        self.closing = False

    def offer(self, event: OrderEventRecord) -> None:
        """A live event (from the hub, on the event loop: no awaiting)."""
        if self.order_id is not None and event.order_id != self.order_id:
            return
        if self._held is not None:
            if len(self._held) >= self._queue_size:
                self._overflow()
            else:
                self._held.append(event)
        elif len(self._pending) >= self._capacity:
            self._overflow()
        else:
            self._push(event)

    def stale(self) -> None:
        """Live events may have been missed (the LISTEN connection dropped): from now on live
        events are held, and what the database has after the cursor goes first."""
        if self._held is None:
            self._held = []
        self._stale = True
        self._wake.set()

    def close(self) -> None:
        self.closing = True
        self._wake.set()

    async def next(self, idle: float) -> OrderEventRecord | None:
        """The next event; None after `idle` seconds without one (time for a heartbeat)."""
        while True:
            if self.closing:
                raise HubClosing()
            if self.overflowed:
                raise SlowConsumer()
            if self._pending:
                return self._pending.popleft()
            if self._stale:
                await self._catch_up()
                continue
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), idle)
            except TimeoutError:
                return None

    async def _catch_up(self) -> None:
        """One page of the backlog after the cursor; after the last page the held live events
        follow (the sequence check drops what the backlog already had)."""
        backlog: list[OrderEventRecord] = await self._read_after(self.order_id, self.cursor)
        for event in backlog:
            self._push(event)
        if len(backlog) >= self._page:
            return  # more to read once this page is sent; live events stay held
        self._stale = False
        self._capacity = self._queue_size + len(self._pending)  # the backlog is not live
        held, self._held = self._held or [], None
        for event in held:
            self._push(event)

    def _push(self, event: OrderEventRecord) -> None:
        if event.seq <= self._last_seq.get(event.order_id, 0):
            return  # had it (the backlog and the live stream overlap)
        self._last_seq[event.order_id] = event.seq
        if len(self._last_seq) > _DEDUPE_ORDERS:
            self._last_seq.pop(next(iter(self._last_seq)))
        self.cursor = event.seq if self.order_id is not None else max(self.cursor, event.position)
        self._pending.append(event)
        self._wake.set()

    def _overflow(self) -> None:
        self.overflowed = True
        self._pending.clear()  # nothing more is sent: the memory goes now
        self._held = None
        self._wake.set()


class OrderEventHub:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        queue_size: int,
        backfill_limit: int,
        observer: LiveObserver | None = None,
    ) -> None:
        self._uow = uow_factory
        self._queue_size = queue_size
        self._backfill_limit = backfill_limit
        self._observer = observer or Unobserved()
        self._watchers: dict[uuid.UUID, set[Subscription]] = {}
        self._notices: list[tuple[uuid.UUID, uuid.UUID, int]] = []
        self._wake = asyncio.Event()
        self._connection: Any = None
        self._lost = asyncio.Event()
        self.available = False  # a LISTEN DSN is configured and the hub runs
        self.closing = False
        self.received = 0

    @property
    def listening(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    # -- sockets ----------------------------------------------------------------------------

    async def check_order(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> None:
        """OrderNotWatchable unless the tenant has this order (another tenant's is not found)."""
        found = await read(
            self._uow, tenant_id, lambda uow: uow.orders.exists(order_id), strong=True
        )
        if not found:
            raise OrderNotWatchable(f"no order {order_id}")

    def ensure_available(self) -> None:
        if not self.available or self.closing:
            raise LiveUnavailable("live order status is not available here", retry_after=5)

    async def head(self, tenant_id: uuid.UUID) -> int:
        """The tenant's newest position: where a tenant-wide stream without `after` starts."""
        return int(
            await read(self._uow, tenant_id, lambda uow: uow.order_events.head(), strong=True)
        )

    @contextlib.asynccontextmanager
    async def subscribe(
        self, tenant_id: uuid.UUID, order_id: uuid.UUID | None, after: int
    ) -> AsyncIterator[Subscription]:
        """Registered before its backlog is read (the first `next()`), so nothing committed
        in between is missed; removed when the block ends."""
        subscription = Subscription(
            tenant_id,
            order_id,
            after,
            self._queue_size,
            self._backfill_limit,
            lambda order, cursor: self._backlog(tenant_id, order, cursor),
        )
        self._watchers.setdefault(tenant_id, set()).add(subscription)
        self._observer.live_socket(1)
        try:
            yield subscription
        finally:
            watchers = self._watchers.get(tenant_id)
            if watchers is not None:
                watchers.discard(subscription)
                if not watchers:
                    del self._watchers[tenant_id]
            self._observer.live_socket(-1)

    def dropped(self, reason: str) -> None:
        self._observer.live_dropped(reason)

    async def _backlog(
        self, tenant_id: uuid.UUID, order_id: uuid.UUID | None, after: int
    ) -> list[OrderEventRecord]:
        limit = self._backfill_limit
        if order_id is not None:
            return await read(
                self._uow,
                tenant_id,
                lambda uow: uow.order_events.of_order(order_id, after, limit),
                strong=True,
            )
        return await read(
            self._uow,
            tenant_id,
            lambda uow: uow.order_events.of_tenant(after, limit),
            strong=True,
        )

    # -- the LISTEN side --------------------------------------------------------------------

    def notified(self, payload: str) -> None:
        try:
            tenant, order, seq = payload.split(" ")
            notice = (uuid.UUID(tenant), uuid.UUID(order), int(seq))
        except ValueError:
            log.warning("live.bad_notification", payload=payload[:200])
            return
        self.received += 1
        if notice[0] in self._watchers:  # nobody here watches the others
            self._notices.append(notice)
            self._wake.set()

    async def run(self, dsn: str) -> None:
        """Forever: keep the LISTEN connection (reconnect when it drops; every subscription
        then catches up from the database) and deliver what it announces."""
        deliver = asyncio.create_task(self._deliver_loop(), name="live-deliver")
        try:
            first = True
            while True:
                if not self.listening:
                    if await self._connect(dsn):
                        if not first:
                            for watchers in list(self._watchers.values()):
                                for subscription in list(watchers):
                                    subscription.stale()
                        first = False
                    else:
                        await asyncio.sleep(1.0)
                        continue
                self._lost.clear()
                await self._lost.wait()
        finally:
            deliver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await deliver

    async def _connect(self, dsn: str) -> bool:
        connection = None
        try:
            connection = await asyncpg.connect(dsn, timeout=2)
            await connection.add_listener(CHANNEL, self._on_notify)
            connection.add_termination_listener(self._on_lost)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            if connection is not None:
                connection.terminate()
            log.warning("live.listen_unavailable", error=repr(error), retry_in=1.0)
            self._observer.live_listening(False)
            return False
        self._connection = connection
        self._observer.live_listening(True)
        log.info("live.listening", channel=CHANNEL)
        return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.notified(payload)

    def _on_lost(self, _conn: Any) -> None:
        log.warning("live.listen_lost", fallback="reconnecting; sockets catch up")
        self._connection = None
        self._observer.live_listening(False)
        self._lost.set()

    async def _deliver_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            notices, self._notices = self._notices, []
            try:
                await self._deliver(notices)
            except Exception as error:  # the database: those sockets catch up instead
                log.warning("live.read_failed", error=repr(error))
                for tenant_id in {notice[0] for notice in notices}:
                    for subscription in list(self._watchers.get(tenant_id, ())):
                        subscription.stale()

    async def _deliver(self, notices: list[tuple[uuid.UUID, uuid.UUID, int]]) -> None:
        by_tenant: dict[uuid.UUID, list[tuple[uuid.UUID, int]]] = {}
        for tenant_id, order_id, seq in notices:
            by_tenant.setdefault(tenant_id, []).append((order_id, seq))
        found: dict[tuple[uuid.UUID, int], OrderEventRecord] = {}
        reads = (self._announced(tenant_id, keys) for tenant_id, keys in by_tenant.items())
        for events in await asyncio.gather(*reads):
            for event in events:
                found[(event.order_id, event.seq)] = event
        for tenant_id, order_id, seq in notices:  # in commit order
            announced = found.get((order_id, seq))
            if announced is None:
                continue
            for subscription in list(self._watchers.get(tenant_id, ())):
                subscription.offer(announced)

    async def _announced(
        self, tenant_id: uuid.UUID, keys: list[tuple[uuid.UUID, int]]
    ) -> list[OrderEventRecord]:
        return await read(
            self._uow, tenant_id, lambda uow: uow.order_events.these(keys), strong=True
        )

    async def close(self) -> None:
        """Shutdown: every socket is told (they close with 1001), then the connection goes."""
        self.closing = True
        for watchers in list(self._watchers.values()):
            for subscription in list(watchers):
                subscription.close()
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(self._on_lost)
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        self._observer.live_listening(False)


async def live_hub(hub: OrderEventHub, listen_dsn: str | None) -> AsyncIterator[OrderEventHub]:
    """Resource: the hub's LISTEN loop for the process's life. Without a DSN (PgBouncer and no
    `websocket.listen_url`) sockets are refused with 503 `websocket.unavailable`."""
    if listen_dsn is None:
        log.warning("live.disabled", reason="no LISTEN connection (set websocket.listen_url)")
        yield hub
        return
    hub.available = True
    task = asyncio.create_task(hub.run(listen_dsn), name="live-hub")
    try:
        yield hub
    finally:
        await hub.close()
        await asyncio.sleep(0)  # let the sockets send their 1001 before the loop stops
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def live_dsn(listen_url: str | None, primary_dsn: str | None) -> str | None:
    """`websocket.listen_url`, else the primary's DSN (None behind PgBouncer)."""
    return listen_url or primary_dsn
