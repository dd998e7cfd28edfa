"""Where the relay publishes: RabbitMQ when `broker.url` is set (each message a CloudEvent,
app/events/envelope.py), else an in-process bus (the `Event` itself, no wire format).

Both deliver at least once: the relay marks events published only after the publish returned
(with RabbitMQ: after the broker confirmed it), so a crash in between publishes them again and
consumers dedupe through their inbox.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

import aio_pika
import structlog

from app.events.envelope import decode, encode
from app.events.errors import HandlerFailed
from app.events.repository import Event

log = structlog.get_logger(__name__)
Handler = Callable[[Event], Awaitable[None]]


class EventPublisher(Protocol):
    async def publish(self, events: list[Event]) -> None:
        """Return only once every event is delivered (or durably accepted); else raise."""
        ...


class InProcessBus:
    """Calls each subscriber in the publishing task: delivery = the handler returned. A handler's
    failure is raised as `HandlerFailed`, which the relay classifies (retry with backoff while
    the failure is an outage; dead-letter a permanent one, or one that keeps failing)."""

    def __init__(self, *handlers: Handler) -> None:
        self._handlers: list[Handler] = list(handlers)

    async def publish(self, events: list[Event]) -> None:
        for event in events:
            for handler in self._handlers:
                try:
                    await handler(event)
                except Exception as error:
                    name = getattr(handler, "__qualname__", repr(handler))
                    raise HandlerFailed(event, name, error) from error


class RabbitPublisher:
    """aio-pika with publisher confirms: `publish` returns once the broker has the messages."""

    def __init__(self, url: str, exchange: str) -> None:
        self._url = url
        self._exchange_name = exchange
        self._connection: Any = None
        self._exchange: Any = None

    async def _ready(self) -> Any:
        if self._exchange is None:
            connection = await aio_pika.connect_robust(self._url)
            try:
                channel = await connection.channel(publisher_confirms=True)
                self._exchange = await channel.declare_exchange(
                    self._exchange_name, aio_pika.ExchangeType.TOPIC, durable=True
                )
            except BaseException:
                await connection.close()  # the next attempt starts afresh; nothing leaks
                raise
            self._connection = connection
        return self._exchange

    async def publish(self, events: list[Event]) -> None:
        exchange = await self._ready()
        for event in events:
            await exchange.publish(encode(event), routing_key=event.topic)

    async def close(self) -> None:
        if self._connection is not None:
            await self._connection.close()


@contextlib.asynccontextmanager
async def consume_from_rabbit(
    url: str, exchange: str, queue: str, handler: Handler
) -> AsyncIterator[None]:
    """For the worker, while the block runs: a durable queue bound to every topic, acked after the
    handler's transaction committed (a crash before that redelivers; the inbox dedupes). A
    message that fails twice goes to `<queue>.dead` instead of looping."""
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=50)
        topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await channel.declare_queue(f"{queue}.dead", durable=True)
        bound = await channel.declare_queue(
            queue,
            durable=True,
            arguments={
                "x-dead-letter-exchange": "",
                "x-dead-letter-routing-key": f"{queue}.dead",
            },
        )
        await bound.bind(topic, routing_key="#")

        async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            # First failure: back on the queue; second: rejected to the dead-letter queue.
            async with message.process(requeue=not message.redelivered):
                await handler(decode(message.body, message.content_type))

        await bound.consume(on_message)
        yield
    finally:
        await connection.close()


def event_publisher(url: str | None, exchange: str, bus: InProcessBus) -> EventPublisher:
    """RabbitMQ when configured, else the in-process bus."""
    return RabbitPublisher(url, exchange) if url else bus


async def publisher_lifecycle(publisher: EventPublisher) -> AsyncIterator[None]:
    """Resource: closes the broker connection (if any) on shutdown."""
    try:
        yield
    finally:
        if isinstance(publisher, RabbitPublisher):
            await publisher.close()
