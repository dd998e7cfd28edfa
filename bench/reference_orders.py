"""Throughput floor for placing an order: bare Starlette + raw asyncpg, on Storefront's schema.

`POST /orders` (`{"items": [{"product_id", "quantity"}], "payment": {"token"}}` plus an
`Idempotency-Key` header) does the minimum correct work of an order in ONE transaction, as the
application role under row-level security:

1. `BEGIN; SELECT set_config('app.tenant_id', <tenant>, true)`: one simple-query batch, the
   way Storefront's unit of work starts a write;
2. per line, in product-id order (no deadlocks between multi-line orders): a guarded
   `UPDATE products SET stock = stock - n ... WHERE ... AND stock >= n RETURNING price`;
3. `INSERT` the order (straight to `confirmed`: there is no payment), its lines and an
   `order.placed` outbox row;
4. `INSERT` the idempotency key, completed, with the response it answers, `ON CONFLICT DO
   NOTHING`: a key already there rolls everything back and the stored answer is replayed (or
   422 for another body), so one key never makes two orders;
5. `COMMIT`; 201 with the order as JSON.

What it leaves out, on purpose: authentication (the tenant is `BENCH_TENANT_ID`), the payment
and so the saga's second transaction, read-your-writes tokens, rate limits, metrics, problem
details. Configured by env: `BENCH_PRIMARY_DSN` (plain `postgresql://` DSN of the application
role on the primary), `BENCH_TENANT_ID`, `BENCH_POOL_SIZE` (min = max).
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

TENANT = uuid.UUID(os.environ.get("BENCH_TENANT_ID", "00000000-0000-4000-8000-0000000000aa"))
# str(UUID) is hex and dashes only: safe to inline, as Storefront's unit of work does.
BEGIN = f"BEGIN READ WRITE; SELECT set_config('app.tenant_id', '{TENANT}', true)"
RESERVE = (
    "UPDATE products SET stock = stock - $3, version = version + 1, updated_at = $4"
    " WHERE tenant_id = $1 AND id = $2 AND stock >= $3 RETURNING price_amount, price_currency"
)
INSERT_ORDER = (
    "INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token,"
    " payment_key, created_at, updated_at) VALUES ($1, $2, 'confirmed', $3, $4, $5, $6, $7, $7)"
)
INSERT_LINE = (
    "INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount,"
    " line_amount) VALUES ($1, $2, $3, $4, $5, $6)"
)
INSERT_EVENT = (
    "INSERT INTO outbox (id, tenant_id, topic, payload, created_at, next_attempt_at)"
    " VALUES ($1, $2, 'order.placed', $3::jsonb, $4, $4)"
)
INSERT_KEY = (
    "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, order_id,"
    " response_status, response_body, expires_at)"
    " VALUES ($1, $2, $3, 'completed', $4, 201, $5::jsonb, $6)"
    " ON CONFLICT DO NOTHING RETURNING key"
)
STORED = "SELECT fingerprint, response_body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2"


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    size = int(os.environ.get("BENCH_POOL_SIZE", "20"))
    pool = await asyncpg.create_pool(os.environ["BENCH_PRIMARY_DSN"], min_size=size, max_size=size)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


class Refused(Exception):
    def __init__(self, status: int, detail: str) -> None:
        self.status, self.detail = status, detail


def _items(body: Any) -> list[tuple[uuid.UUID, int]]:
    """product id -> summed quantity, sorted by id; Refused(422) for anything malformed."""
    try:
        quantities: dict[uuid.UUID, int] = {}
        for item in body["items"]:
            quantity = item["quantity"]
            if type(quantity) is not int or not 1 <= quantity <= 1000:
                raise ValueError("quantity")
            product = uuid.UUID(item["product_id"])
            quantities[product] = quantities.get(product, 0) + quantity
        if not quantities or not isinstance(body["payment"]["token"], str):
            raise ValueError("empty")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise Refused(422, "invalid order") from error
    return sorted(quantities.items())


async def _place(conn: Any, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    items = _items(body)
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).digest()
    now = datetime.now(UTC)
    order_id = uuid.uuid4()
    lines: list[tuple[uuid.UUID, int, int]] = []
    currency = ""
    for product, quantity in items:
        row = await conn.fetchrow(RESERVE, TENANT, product, quantity, now)
        if row is None:
            raise Refused(409, f"not enough stock of product {product} (or no such product)")
        if currency and row[1] != currency:
            raise Refused(422, "mixed currencies")
        currency = row[1]
        lines.append((product, quantity, row[0]))
    total = sum(quantity * amount for _, quantity, amount in lines)
    answer = {
        "id": str(order_id),
        "status": "confirmed",
        "total": {"amount": total, "currency": currency},
        "items": [
            {"product_id": str(p), "quantity": q, "unit_price": {"amount": a, "currency": currency}}
            for p, q, a in lines
        ],
        "created_at": now.isoformat(),
        "updated_at": now.isoformat(),
    }
    token = str(body["payment"]["token"])
    await conn.execute(
        INSERT_ORDER, order_id, TENANT, total, currency, token, f"{TENANT}:{key}", now
    )
    await conn.executemany(INSERT_LINE, [(order_id, p, TENANT, q, a, q * a) for p, q, a in lines])
    await conn.execute(
        INSERT_EVENT, uuid.uuid4(), TENANT, json.dumps({"order_id": answer["id"]}), now
    )
    claimed = await conn.fetchval(
        INSERT_KEY, TENANT, key, fingerprint, order_id, json.dumps(answer), now + timedelta(days=1)
    )
    if claimed is None:
        # The key was used (ON CONFLICT waited for its first request to commit): read what it
        # stored, in this transaction (the tenant is set), then the caller rolls this order back.
        stored = await conn.fetchrow(STORED, TENANT, key)
        if stored is None or stored[0] != fingerprint:
            raise Refused(422, "this idempotency key was used with a different request")
        raise Replayed(json.loads(stored[1]))
    return 201, answer


class Replayed(Exception):
    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body


async def place_order(request: Request) -> JSONResponse:
    key = request.headers.get("idempotency-key", "")
    if not 1 <= len(key) <= 255:
        return JSONResponse({"detail": "Idempotency-Key required"}, status_code=400)
    try:
        body = json.loads(await request.body())
    except ValueError:
        return JSONResponse({"detail": "invalid JSON"}, status_code=422)
    async with request.state.pool.acquire() as conn:
        await conn.execute(BEGIN)
        try:
            status, answer = await _place(conn, key, body)
        except BaseException as error:
            await conn.execute("ROLLBACK")
            if isinstance(error, Replayed):
                return JSONResponse(error.body, headers={"Idempotent-Replayed": "true"})
            if isinstance(error, Refused):
                return JSONResponse({"detail": error.detail}, status_code=error.status)
            raise
        await conn.execute("COMMIT")
    return JSONResponse(answer, status_code=status)


async def latest_order(request: Request) -> JSONResponse:
    """Readiness and a sanity check: the tenant's newest order, read under RLS."""
    async with request.state.pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SELECT set_config('app.tenant_id', '{TENANT}', true)")
        row = await conn.fetchval(
            "SELECT id FROM orders WHERE tenant_id = $1 ORDER BY created_at DESC LIMIT 1", TENANT
        )
    return JSONResponse({"latest": str(row) if row else None})


app = Starlette(
    routes=[Route("/orders", place_order, methods=["POST"]), Route("/orders", latest_order)],
    lifespan=lifespan,
)
