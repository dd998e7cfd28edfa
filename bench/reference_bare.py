"""Throughput floor for `GET /products/{id}`: bare Starlette + raw asyncpg, nothing else.

No auth, no tenancy, no ORM, no validation: whatever Storefront spends on top of this is the price
of its own layers. Configured by env: `BENCH_DSN` (plain `postgresql://` DSN) and
`BENCH_POOL_SIZE` (min = max, so no connection is opened while measuring).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

QUERY = (
    "SELECT id, sku, name, description, price_amount, price_currency, stock, version, "
    "created_at, updated_at FROM products WHERE id = $1"
)


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    size = int(os.environ.get("BENCH_POOL_SIZE", "20"))
    pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=size, max_size=size)
    try:
        yield {"pool": pool}
    finally:
        await pool.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    return value


async def get_product(request: Request) -> JSONResponse:
    product_id: uuid.UUID = request.path_params["id"]
    row = await request.state.pool.fetchrow(QUERY, product_id)
    if row is None:
        return JSONResponse({"detail": "Not found"}, status_code=404)
    return JSONResponse({key: _jsonable(value) for key, value in row.items()})


app = Starlette(routes=[Route("/products/{id:uuid}", get_product)], lifespan=lifespan)
