"""The outbox relay: publishes committed events, in order, at least once.

A batch is claimed with `FOR UPDATE SKIP LOCKED` (relays in several workers share the work),
published, and marked in the same transaction; if publishing fails the batch is postponed with
exponential backoff; if the process dies after publishing but before the commit, the rows are
still unpublished and go out again (consumers dedupe). Woken by LISTEN/NOTIFY on a dedicated
connection, with polling as the fallback (and the only way through PgBouncer).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import structlog

from app.core.clock import Clock
from app.core.tasks import in_background
from app.db.uow import UnitOfWork, UnitOfWorkFactory
from app.events.bus import EventPublisher
from app.events.errors import HandlerFailed
from app.events.repository import Backlog, DeadLetter, PendingEvent
from app.settings import DatabaseSettings, OutboxSettings

log = structlog.get_logger(__name__)
CHANNEL = "storefront_outbox"
BACKLOG_CAP = 100_000  # the backlog gauge counts up to this many events


class OutboxRelay:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        publisher: EventPublisher,
        clock: Clock,
        settings: OutboxSettings,
        on_result: Callable[[str, int], None],
        on_dead_letter: Callable[[str], None] = lambda topic: None,
    ) -> None:
        self._uow = uow_factory
        self._publisher = publisher
        self._clock = clock
        self._settings = settings
        self._count = on_result  # events published / failed (metrics)
        self._dead_lettered = on_dead_letter  # by topic (metrics)
        self._wake = asyncio.Event()

    async def run_once(self) -> int:
        """Publish one batch; returns how many events went out. Events are published one by
        one: one that fails is postponed (with its own backoff) without holding back the rest,
        so delivery is in order per relay pass but not guaranteed in order overall."""
        now = self._clock.now()
        async with self._uow() as uow:
            batch = await uow.outbox.claim(self._settings.batch_size, now)
            published: list[int] = []
            for item in batch:
                try:
                    await self._publisher.publish([item.event])
                except HandlerFailed as failure:  # the in-process bus: a consumer failed
                    if self._gives_up(failure, item.attempts + 1):
                        await self._dead_letter(uow, item, failure, now)
                    else:
                        await self._postpone(uow, item, failure, now)
                except Exception as error:  # the broker: retried as long as it takes
                    await self._postpone(uow, item, error, now)
                else:
                    published.append(item.seq)
            if published:
                await uow.outbox.mark_published(published, now)
            await uow.commit()
        self._count("published", len(published))
        return len(published)

    def _gives_up(self, failure: HandlerFailed, attempts: int) -> bool:
        """Permanent: now. An outage (database, connectivity): never, it backs off instead.
        Anything else (a bug, bad data): after `outbox.max_attempts` attempts."""
        if failure.permanent:
            return True
        return not failure.transient and attempts >= self._settings.max_attempts

    async def _postpone(
        self, uow: UnitOfWork, item: PendingEvent, error: Exception, now: datetime
    ) -> None:
        delay = min(2 ** (item.attempts + 1), self._settings.max_backoff_seconds)
        log.warning(
            "outbox.publish_failed", event_id=str(item.event.id), error=repr(error), retry_in=delay
        )
        await uow.outbox.postpone([item.seq], now + timedelta(seconds=delay), repr(error))
        self._count("failed", 1)

    async def _dead_letter(
        self, uow: UnitOfWork, item: PendingEvent, failure: HandlerFailed, now: datetime
    ) -> None:
        log.error(
            "outbox.dead_lettered",
            event_id=str(item.event.id),
            topic=item.event.topic,
            tenant_id=str(item.event.tenant_id),
            attempts=item.attempts + 1,
            handler=failure.handler_name,
            error=repr(failure.cause),
        )
        await uow.outbox.dead_letter(item.seq, now, f"{failure.handler_name}: {failure.cause!r}")
        self._count("dead_lettered", 1)
        self._dead_lettered(item.event.topic)

    async def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Operator: events set aside, oldest first."""
        async with self._uow(read_only=True, strong=True) as uow:
            return await uow.outbox.dead_letters(limit)

    async def backlog(self) -> Backlog:
        """What is waiting to be published (metrics, at scrape time): on the primary, where the
        relay marks rows, so a replica's lag never shows as backlog."""
        async with self._uow(read_only=True, strong=True) as uow:
            return await uow.outbox.backlog(BACKLOG_CAP)

    async def retry_dead_letters(self, event_ids: list[uuid.UUID] | None) -> int:
        """Operator: these dead-lettered events (None: all) are published again (after the
        cause is fixed); returns how many. The consumers' inbox keeps a retry idempotent."""
        async with self._uow() as uow:
            revived = await uow.outbox.revive(event_ids, self._clock.now())
            await uow.commit()
        self._wake.set()
        return revived

    async def drain(self) -> int:
        """Publish until nothing is due."""
        total = 0
        while sent := await self.run_once():
            total += sent
        return total

    async def purge(self) -> int:
        """Delete published events older than `outbox.retention_days` (none when it is null:
        the outbox is then the retained log that replays read)."""
        if self._settings.retention_days is None:
            return 0
        before = self._clock.now() - timedelta(days=self._settings.retention_days)
        async with self._uow() as uow:
            gone = await uow.outbox.purge(before)
            await uow.commit()
        return gone

    async def run(self, listen_dsn: str | None) -> None:
        """Forever: drain, then sleep until NOTIFY or the poll interval. The LISTEN
        connection is reopened when it drops (polling covers the gap)."""
        listener: Any = None
        try:
            while True:
                if listen_dsn is not None and (listener is None or listener.is_closed()):
                    listener = await self._listen(listen_dsn)
                self._wake.clear()  # before draining: a NOTIFY during the drain is kept
                try:
                    await self.drain()
                except Exception as error:  # the database may be down: keep polling
                    log.warning("outbox.relay_failed", error=repr(error))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), timeout=self._settings.poll_interval_seconds
                    )
        finally:
            if listener is not None:
                await listener.close()

    async def _listen(self, dsn: str) -> Any:
        connection = None
        try:
            connection = await asyncpg.connect(dsn, timeout=2)
            await connection.add_listener(CHANNEL, lambda *_: self._wake.set())
            return connection
        except (OSError, asyncpg.PostgresError) as error:
            if connection is not None:
                await connection.close()
            log.warning("outbox.listen_unavailable", error=repr(error), fallback="polling")
            return None


async def relay_in_api(
    relay: OutboxRelay, enabled: bool, listen_dsn: str | None
) -> AsyncIterator[None]:
    """Resource: with `outbox.relay_in_api` the relay also runs as a task of the API process."""
    if not enabled:
        yield
        return
    async with in_background(relay.run(listen_dsn), "outbox-relay"):
        yield


def listen_dsn(database: DatabaseSettings) -> str | None:
    """A plain asyncpg DSN of the primary for LISTEN (the SQLAlchemy URL minus the driver);
    None through PgBouncer, where LISTEN does not work (the relay polls)."""
    if database.pgbouncer:
        return None
    return database.primary.url.replace("postgresql+asyncpg://", "postgresql://", 1)
