"""A cross-process invalidation channel: "this changed, drop what you cached about it".

Publishing happens inside the writer's transaction (`uow.invalidations.publish(topic, ids)`
runs `SELECT pg_notify('storefront_invalidation', ...)`), so PostgreSQL delivers the message at
commit and never for a rolled-back write. Every process runs one `InvalidationListener`: a
dedicated asyncpg LISTEN connection (reopened when it drops) that hands each message to the
handler subscribed to its topic.

NOTIFY is fire-and-forget (a message sent while a listener is reconnecting is lost, and LISTEN
does not work through PgBouncer transaction pooling), so each subscriber also has `resync()`:
re-read what changed from the database. The listener calls it at start-up (before the process
serves), right after every (re)connect, and every `invalidation.resync_interval_seconds`;
behind PgBouncer (`listen_dsn` None) that periodic re-read is the only path.

Subscribers are listed in the container (`invalidation_listener`'s `subscribers`): today the
identity revocations; tenant plans and flags can join by exposing `topics` and `resync`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, Protocol

import asyncpg
import structlog

from app.core.tasks import in_background

log = structlog.get_logger(__name__)
CHANNEL = "storefront_invalidation"
# NOTIFY payloads must stay below 8000 bytes: 100 UUIDs are about 4 KB of JSON.
IDS_PER_MESSAGE = 100

Handler = Callable[[list[str]], None]


class Subscriber(Protocol):
    @property
    def topics(self) -> Mapping[str, Handler]:
        """Topic -> handler of the message's ids (sync, cheap: it runs on the event loop)."""
        ...

    async def resync(self) -> None:
        """Re-read from the database what may have changed (messages can be missed)."""
        ...

    async def close(self) -> None:
        """Stop any work the handlers started (the listener closes before the database)."""
        ...


def encode(topic: str, ids: Sequence[str]) -> list[str]:
    """The NOTIFY payloads for one invalidation (several when there are many ids)."""
    return [
        json.dumps({"topic": topic, "ids": list(ids[i : i + IDS_PER_MESSAGE])})
        for i in range(0, len(ids), IDS_PER_MESSAGE)
    ]


class InvalidationRepository:
    """The publishing half, used through a unit of work (inside its transaction)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def publish(self, topic: str, ids: Sequence[str]) -> None:
        payloads = encode(topic, ids)
        if payloads:
            await self._conn.execute(
                "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                CHANNEL,
                payloads,
            )


class InvalidationListener:
    def __init__(
        self,
        subscribers: Sequence[Subscriber],
        resync_interval: float,
        on_state: Callable[[bool], None] | None = None,
    ) -> None:
        self._subscribers = list(subscribers)
        self._handlers: dict[str, list[Handler]] = {}
        for subscriber in self._subscribers:
            for topic, handler in subscriber.topics.items():
                self._handlers.setdefault(topic, []).append(handler)
        self._interval = resync_interval
        self._on_state = on_state or (lambda _: None)
        self._wake = asyncio.Event()
        self._connection: Any = None
        self.listening = False
        self.received = 0
        self._warned = False

    def dispatch(self, payload: str) -> None:
        """Hand one message to its topic's handlers; a bad message or handler is logged."""
        try:
            message = json.loads(payload)
            topic, ids = message["topic"], [str(i) for i in message["ids"]]
        except (ValueError, KeyError, TypeError):
            log.warning("invalidation.bad_message", payload=payload[:200])
            return
        self.received += 1
        for handler in self._handlers.get(topic, ()):
            try:
                handler(ids)
            except Exception as error:
                log.warning("invalidation.handler_failed", topic=topic, error=repr(error))

    async def resync(self) -> bool:
        """Every subscriber re-reads; False when one failed (it is retried next interval)."""
        ok = True
        for subscriber in self._subscribers:
            try:
                await subscriber.resync()
            except Exception as error:
                ok = False
                log.warning(
                    "invalidation.resync_failed",
                    subscriber=type(subscriber).__name__,
                    error=repr(error),
                )
        return ok

    async def start(self, dsn: str | None) -> None:
        """LISTEN first, then the start-up load: nothing committed in between is missed."""
        if dsn is not None:
            await self._connect(dsn)
        await self.resync()

    async def run(self, dsn: str | None) -> None:
        """Forever: reconnect the LISTEN connection when it dropped (and re-read what the gap
        may have hidden), re-read every interval."""
        while True:
            if dsn is not None and not self._connected() and await self._connect(dsn):
                await self.resync()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            await self.resync()

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        self._set_state(False)
        if connection is not None and not connection.is_closed():
            connection.remove_termination_listener(self._on_lost)
            with contextlib.suppress(Exception):
                await connection.close(timeout=2)
        for subscriber in self._subscribers:
            await subscriber.close()

    def _connected(self) -> bool:
        return self._connection is not None and not self._connection.is_closed()

    async def _connect(self, dsn: str) -> bool:
        if self._connection is not None:
            with contextlib.suppress(Exception):
                self._connection.remove_termination_listener(self._on_lost)
                self._connection.terminate()
            self._connection = None
        connection = None
        try:
            connection = await asyncpg.connect(dsn, timeout=2)
            await connection.add_listener(CHANNEL, self._on_notify)
            connection.add_termination_listener(self._on_lost)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            if connection is not None:
                connection.terminate()
            if not self._warned:  # once per outage, not every interval
                self._warned = True
                log.warning(
                    "invalidation.listen_unavailable",
                    error=repr(error),
                    fallback=f"re-read every {self._interval}s",
                )
            self._set_state(False)
            return False
        self._connection = connection
        self._warned = False
        self._set_state(True)
        log.info("invalidation.listening", channel=CHANNEL)
        return True

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        self.dispatch(payload)

    def _on_lost(self, _conn: Any) -> None:
        log.warning("invalidation.listen_lost", fallback="reconnecting")
        self._set_state(False)
        self._wake.set()

    def _set_state(self, listening: bool) -> None:
        self.listening = listening
        self._on_state(listening)


async def invalidation_listening(
    listener: InvalidationListener, listen_dsn: str | None, database: Any = None
) -> AsyncIterator[InvalidationListener]:
    """Resource: LISTEN + the start-up load before the process serves, then the loop.
    `database` is the started database (its lifecycle resource): it orders start-up."""
    await listener.start(listen_dsn)
    try:
        async with in_background(listener.run(listen_dsn), "invalidation-listener"):
            yield listener
    finally:
        await listener.close()
