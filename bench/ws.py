"""The `ws-500` scenario: live order status to 500 WebSocket clients across two API processes.

`python -m bench.run --scenario ws-500 [--duration N]`: its own PostgreSQL cluster, two
`storefront serve` processes on it, 250 clients on each watching the bench tenant's stream
(`/v1/orders/events`, X-API-Key), and a producer that places and cancels orders through the
first process's HTTP API at `ORDERS_PER_SECOND` for `--duration` seconds (3 status changes per
order: pending, confirmed, cancelled). Then every client must have received each of those events
exactly once.

Latency is receive time minus the event's `at` (the order's `updated_at`, set by the service
just before its transaction commits: commit-to-delivery plus the commit itself), on one
machine's clock. Printed: p50/p95/p99/max, deliveries, missed and duplicated (must be 0).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import httpx
from websockets.asyncio.client import ClientConnection, connect

from app.devcluster import LocalCluster

CLIENTS = 500
ORDERS_PER_SECOND = 5
SETTLE_SECONDS = 5.0  # after the last cancel, for the last deliveries


@dataclass
class Client:
    received: list[tuple[str, int]] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    closed: int | None = None


async def follow(connection: ClientConnection, client: Client) -> None:
    try:
        async for raw in connection:
            now = time.time()
            message = json.loads(raw)
            if message["type"] != "order.status":
                continue
            client.received.append((message["order_id"], message["seq"]))
            client.latencies.append(now - datetime.fromisoformat(message["at"]).timestamp())
    except Exception:
        client.closed = -1
    else:
        client.closed = connection.close_code


async def produce(base_url: str, key: str, product_id: str, duration: float) -> list[str]:
    """Place and cancel orders at ORDERS_PER_SECOND for `duration`; the ids placed."""
    orders: list[str] = []
    headers = {"X-API-Key": key}
    body = {"items": [{"product_id": product_id, "quantity": 1}], "payment": {"token": "tok_ok"}}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        start = time.monotonic()
        while time.monotonic() - start < duration:
            tick = time.monotonic()
            placed = await http.post(
                "/v1/orders", json=body, headers={**headers, "Idempotency-Key": uuid.uuid4().hex}
            )
            if placed.status_code != 201:
                raise RuntimeError(f"POST /v1/orders -> {placed.status_code}: {placed.text}")
            order_id = placed.json()["id"]
            orders.append(order_id)
            cancelled = await http.post(f"/v1/orders/{order_id}/cancel", headers=headers)
            if cancelled.status_code != 200:
                raise RuntimeError(f"cancel -> {cancelled.status_code}: {cancelled.text}")
            await asyncio.sleep(max(0.0, 1 / ORDERS_PER_SECOND - (time.monotonic() - tick)))
    return orders


async def measure(urls: Sequence[str], key: str, product_id: str, duration: float) -> str:
    clients = [Client() for _ in range(CLIENTS)]
    connections: list[ClientConnection] = []
    for n in range(CLIENTS):
        url = urls[n % len(urls)].replace("http://", "ws://") + "/v1/orders/events"
        connections.append(await connect(url, additional_headers={"X-API-Key": key}))
    readers = [
        asyncio.create_task(follow(c, client))
        for c, client in zip(connections, clients, strict=True)
    ]
    await asyncio.sleep(1.0)  # every socket subscribed
    orders = await produce(urls[0], key, product_id, duration)
    await asyncio.sleep(SETTLE_SECONDS)
    for connection in connections:
        await connection.close()
    await asyncio.gather(*readers)

    expected = {(order, seq) for order in orders for seq in (1, 2, 3)}
    missed = duplicated = 0
    for client in clients:
        got = set(client.received)
        missed += len(expected - got)
        duplicated += len(client.received) - len(got)
    latencies = sorted(x * 1000 for client in clients for x in client.latencies)
    if not latencies:
        return "no event was delivered"
    cut = statistics.quantiles(latencies, n=100, method="inclusive")
    return (
        f"ws-500: {CLIENTS} clients on {len(urls)} processes, {len(orders)} orders"
        f" ({len(expected)} events, {ORDERS_PER_SECOND} orders/s for {duration:.0f} s),"
        f" {len(latencies)} deliveries\n"
        f"  write-to-delivery ms: p50 {cut[49]:.1f}  p95 {cut[94]:.1f}  p99 {cut[98]:.1f}"
        f"  max {latencies[-1]:.1f}\n"
        f"  missed {missed}  duplicated {duplicated}"
    )


def run_ws(duration: int) -> str:
    """The whole scenario: cluster, two API processes, clients, producer; the result lines."""
    from bench.run import READ_POOLS, Storefront, free_port  # bench.run imports this lazily

    cluster = LocalCluster(".local/bench")
    first: Storefront | None = None
    second: Storefront | None = None
    try:
        print("starting PostgreSQL primary + replica ...", flush=True)
        cluster.up()
        first = Storefront(cluster, free_port())
        print("storefront: migrate, tenant, api key, two processes ...", flush=True)
        first.prepare()
        second = Storefront(cluster, free_port())
        second.api_key = first.api_key
        first.serve(READ_POOLS)
        second.serve(READ_POOLS)
        product_id = first.seed(1, stock=100_000_000, prefix=f"ws-{uuid.uuid4().hex[:6]}")[0]
        return asyncio.run(
            measure([first.base_url, second.base_url], first.api_key, product_id, duration)
        )
    finally:
        for server in (second, first):
            if server is not None:
                server.stop()
        print("stopping PostgreSQL ...", flush=True)
        cluster.down()
