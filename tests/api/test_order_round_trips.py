"""Round trips of `POST /v1/orders`: every statement an order sends to PostgreSQL, counted.

asyncpg's query logger sees each statement the application sends (a simple-query batch such as
`BEGIN; SELECT set_config(...)` is one), and with warm statement caches each is one round trip.
Its callbacks run in a copy of the sending task's context, so only statements sent on behalf
of the request under the `_counting` context variable are counted (the health poller, started
before, is not). docs/performance.md lists what each statement is for; a change that adds one
fails here.
"""

from __future__ import annotations

import asyncio
import contextvars
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event

from tests.api.test_orders import ORDER_SCOPES
from tests.conftest import Harness

_counting: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "_counting", default=None
)
_arguments: dict[str, tuple[Any, ...]] = {}  # the last arguments each statement was sent with
# BEGIN + tenant, claim key + prices, order + lines + event + reservation, COMMIT; confirm
# (status, key, event: one statement, its own transaction), read-your-writes token.
ORDER_ROUND_TRIPS = 6


def _log(record: Any) -> None:
    statements = _counting.get()
    if statements is not None:
        statements.append(" ".join(record.query.split()))
        _arguments[statements[-1]] = tuple(record.args or ())


@asynccontextmanager
async def statements_of(harness: Harness) -> AsyncIterator[list[str]]:
    """Every statement sent inside the block, on any node (read once the block has exited).
    The nodes' idle connections go back to the pool first, so each connection the block uses
    passes the pool's checkout (where the logger is attached) at least once."""

    def attach(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(_log)  # a set: added once

    nodes = harness.container.database().nodes
    for node in nodes:
        await node.close_idle()
    pools = [node.engine.sync_engine.pool for node in nodes]
    for pool in pools:
        event.listen(pool, "checkout", attach)
    statements: list[str] = []
    token = _counting.set(statements)
    try:
        yield statements
    finally:
        _counting.reset(token)
        for pool in pools:
            event.remove(pool, "checkout", attach)


async def _products(harness: Harness, count: int) -> list[str]:
    _, secret = await harness.tenant_with_key("acme", scopes=ORDER_SCOPES)
    harness.client.headers["X-API-Key"] = secret
    ids = []
    for n in range(count):
        created = await harness.client.post(
            "/v1/products",
            json={
                "sku": f"SKU-{n}",
                "name": "Mug",
                "price": {"amount": 1299, "currency": "EUR"},
                "stock": 100,
            },
        )
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    return ids


async def _counted_order(harness: Harness, products: list[str]) -> list[str]:
    body = {
        "items": [{"product_id": p, "quantity": 1} for p in products],
        "payment": {"token": "tok_ok"},
    }
    async with statements_of(harness) as statements:
        response = await harness.client.post(
            "/v1/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        await asyncio.sleep(0)  # the logger's callbacks were call_soon'd: let them run
    assert response.status_code == 201, response.text
    return statements


async def test_an_order_costs_a_fixed_number_of_round_trips(make_harness: Any) -> None:
    # The key is verified from the in-process cache, as in production (config/base.yaml).
    harness = await make_harness(auth={"api_key_cache_ttl_seconds": 30})
    products = await _products(harness, 3)
    await _counted_order(harness, products[:1])  # warms statement caches, credential cache
    await _counted_order(harness, products)
    one_line = await _counted_order(harness, products[:1])
    three_lines = await _counted_order(harness, products)
    listing = "\n".join(one_line)
    assert len(one_line) == ORDER_ROUND_TRIPS, listing
    # One statement reserves every line: lines do not add round trips.
    assert len(three_lines) == ORDER_ROUND_TRIPS, "\n".join(three_lines)


async def test_no_statement_of_an_order_scans_a_table(make_harness: Any) -> None:
    """Every statement an order sends (placed, declined and compensated, cancelled) is planned
    with sequential scans disabled: a plan that still has one has no index to use, and its cost
    grows with the table (a key looked up by its order scanned every key of the tenant)."""
    harness = await make_harness(auth={"api_key_cache_ttl_seconds": 30})
    products = await _products(harness, 2)
    sent: set[str] = set()
    for token in ("tok_ok", "tok_declined"):
        body = {"items": [{"product_id": products[0], "quantity": 1}], "payment": {"token": token}}
        async with statements_of(harness) as statements:
            placed = await harness.client.post(
                "/v1/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            if token == "tok_ok":
                order_id = placed.json()["id"]
                cancelled = await harness.client.post(f"/v1/orders/{order_id}/cancel")
                assert cancelled.status_code == 200, cancelled.text
            await asyncio.sleep(0)
        sent.update(statements)
    data = [
        q for q in sent if q.split(" ", 1)[0] in ("WITH", "SELECT", "UPDATE", "INSERT", "DELETE")
    ]
    assert any("idempotency_keys" in q and "order_id" in q for q in data), data
    tenant = harness.client.headers["X-API-Key"]
    assert tenant
    node = harness.container.database().nodes[0]
    async with node.engine.connect() as connection:
        raw = await connection.get_raw_connection()
        conn: Any = raw.driver_connection
        async with conn.transaction():
            await conn.execute("SET LOCAL enable_seqscan = off")
            await conn.execute(f"SELECT set_config('app.tenant_id', '{uuid.uuid4()}', true)")
            for query in data:
                if "pg_wal" in query or "set_config" in query:
                    continue
                plan = "\n".join(
                    row[0] for row in await conn.fetch("EXPLAIN " + query, *_arguments[query])
                )
                assert "Seq Scan" not in plan, f"{query}\n{plan}"
