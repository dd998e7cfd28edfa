"""`storefront worker`: the background half of the service.

- the outbox relay (LISTEN/NOTIFY + polling);
- with RabbitMQ, the sales read model's consumer (without it the read model consumes in the
  relay's task through the in-process bus);
- every `orders.recovery_interval_seconds`: settle orders a crash left pending, delete expired
  idempotency keys, old published events and expired revocations;
- `GET /metrics` on `worker.metrics_host:worker.metrics_port` (operator token), the same
  registry design as the API's (app/metrics.py): relay counts, pools, breakers, backlog.

Several workers can run at once: the relay and the recovery claim rows with SKIP LOCKED or
compare-and-set, and consumers dedupe through the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import structlog

from app.core.tasks import in_background
from app.events.bus import consume_from_rabbit
from app.events.relay import listen_dsn

log = structlog.get_logger(__name__)


async def housekeeping(container: Any) -> dict[str, int]:
    """One pass of the periodic jobs; returns what each did (-1: it failed, see the log).
    Each job runs on its own: one failing does not stop the others."""
    orders, relay = container.order_service(), container.outbox_relay()
    jobs = {
        "orders_settled": orders.recover,
        "idempotency_keys_purged": orders.purge_expired_keys,
        "events_published": relay.drain,
        "events_purged": relay.purge,
        "revocations_purged": container.revocations().purge,
    }
    report = {}
    for name, job in jobs.items():
        try:
            report[name] = await job()
        except Exception as error:
            log.warning("worker.job_failed", job=name, error=repr(error))
            report[name] = -1
    return report


async def run(container: Any, once: bool) -> dict[str, int] | None:
    settings = container.settings()
    lifecycles = (
        container.database_lifecycle,
        container.payment_transport_lifecycle,
        container.event_publisher_lifecycle,
    )
    for lifecycle in lifecycles:
        await lifecycle.init()
    try:
        if once:
            return await housekeeping(container)
        await _forever(container, settings)
        return None
    finally:
        for lifecycle in reversed(lifecycles):
            await lifecycle.shutdown()


async def _forever(container: Any, settings: Any) -> None:
    # SIGTERM/SIGINT finish the pass in progress, then everything shuts down in order.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with contextlib.AsyncExitStack() as running:
        if settings.worker.metrics_port:
            from app.http.metrics_server import serving_metrics  # uvicorn: only when serving

            await running.enter_async_context(
                serving_metrics(
                    container.process_metrics(process="worker"),
                    settings.ops.operator_token,
                    settings.worker.metrics_host,
                    settings.worker.metrics_port,
                )
            )
        relay = container.outbox_relay().run(listen_dsn(settings.database))
        await running.enter_async_context(in_background(relay, "outbox-relay"))
        if settings.broker.url:
            consumer = consume_from_rabbit(
                settings.broker.url,
                settings.broker.exchange,
                settings.broker.queue,
                container.sales_projector().handle,
            )
            await running.enter_async_context(consumer)
        while not stop.is_set():
            log.info("worker.housekeeping", **await housekeeping(container))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.orders.recovery_interval_seconds)
        log.info("worker.stopping")
