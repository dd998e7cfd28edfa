"""Orders and idempotency keys: SQL on the unit of work's connection."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    product_id: uuid.UUID
    quantity: int
    unit_amount: int


@dataclass(frozen=True, slots=True)
class OrderRecord:
    id: uuid.UUID
    tenant_id: uuid.UUID
    status: str
    total_amount: int
    currency: str
    payment_token: str
    payment_key: str
    authorization_id: str | None
    created_at: datetime
    updated_at: datetime
    lines: tuple[OrderLineRecord, ...] = ()


_ORDER_COLUMNS = (
    "id, tenant_id, status, total_amount, currency, payment_token, payment_key, authorization_id,"
    " created_at, updated_at"
)


class OrderRepository(TenantScoped):
    async def add(
        self,
        order_id: uuid.UUID,
        total_amount: int,
        currency: str,
        payment_token: str,
        payment_key: str,
        lines: Sequence[OrderLineRecord],
        at: datetime,
    ) -> None:
        await self._conn.execute(
            "INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token,"
            " payment_key, created_at, updated_at)"
            " VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $7)",
            order_id,
            self._tenant_id,
            total_amount,
            currency,
            payment_token,
            payment_key,
            at,
        )
        await self._conn.executemany(
            "INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount)"
            " VALUES ($1, $2, $3, $4, $5)",
            [
                (order_id, ln.product_id, self._tenant_id, ln.quantity, ln.unit_amount)
                for ln in lines
            ],
        )

    async def get(self, order_id: uuid.UUID, *, lock: bool = False) -> OrderRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_ORDER_COLUMNS} FROM orders WHERE tenant_id = $1 AND id = $2"
            + (" FOR UPDATE" if lock else ""),
            self._tenant_id,
            order_id,
        )
        if row is None:
            return None
        return (await self._with_lines([OrderRecord(*row)]))[0]

    async def page(self, limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[OrderRecord]:
        rows = await self._page(_ORDER_COLUMNS, "orders", limit, after)
        return await self._with_lines([OrderRecord(*row) for row in rows])

    async def _with_lines(self, orders: list[OrderRecord]) -> list[OrderRecord]:
        if not orders:
            return orders
        rows = await self._conn.fetch(
            "SELECT order_id, product_id, quantity, unit_amount FROM order_lines"
            " WHERE tenant_id = $1 AND order_id = ANY($2::uuid[]) ORDER BY order_id, product_id",
            self._tenant_id,
            [order.id for order in orders],
        )
        lines: dict[uuid.UUID, list[OrderLineRecord]] = {}
        for row in rows:
            lines.setdefault(row[0], []).append(OrderLineRecord(row[1], row[2], row[3]))
        return [replace(order, lines=tuple(lines.get(order.id, ()))) for order in orders]

    async def transition(
        self,
        order_id: uuid.UUID,
        expected: str,
        status: str,
        at: datetime,
        authorization_id: str | None = None,
    ) -> OrderRecord | None:
        """Compare-and-set on the status (the saga's step): the order as it is now (without
        its lines), or None when someone else moved it."""
        row = await self._conn.fetchrow(
            "UPDATE orders SET status = $4, updated_at = $5,"
            " authorization_id = coalesce($6, authorization_id)"
            f" WHERE tenant_id = $1 AND id = $2 AND status = $3 RETURNING {_ORDER_COLUMNS}",
            self._tenant_id,
            order_id,
            expected,
            status,
            at,
            authorization_id,
        )
        return OrderRecord(*row) if row else None

    async def lease(self, order_id: uuid.UUID, before: datetime, at: datetime) -> bool:
        """Take a stuck order for recovery: touching `updated_at` keeps other workers (and a
        later pass) off it for `orders.recovery_age_seconds`."""
        result: str = await self._conn.execute(
            "UPDATE orders SET updated_at = $4 WHERE tenant_id = $1 AND id = $2"
            " AND status = 'pending' AND updated_at < $3",
            self._tenant_id,
            order_id,
            before,
            at,
        )
        return result != "UPDATE 0"

    async def stuck(self, before: datetime, limit: int) -> list[tuple[uuid.UUID, uuid.UUID]]:
        """(tenant, order) of pending orders untouched since `before`, across tenants (an
        owner-run function: the worker does not know the tenants beforehand)."""
        rows = await self._conn.fetch(
            "SELECT tenant_id, id FROM storefront_stuck_orders($1, $2)", before, limit
        )
        return [(row[0], row[1]) for row in rows]


@dataclass(frozen=True, slots=True)
class IdempotencyRecord:
    key: str
    fingerprint: bytes
    status: str
    order_id: uuid.UUID | None
    response_status: int | None
    response_body: dict[str, Any] | None


class IdempotencyRepository(TenantScoped):
    async def claim(
        self, key: str, fingerprint: bytes, order_id: uuid.UUID, expires_at: datetime
    ) -> bool:
        """Insert the key as in flight for the order about to be made; False when it exists
        (then `get` it)."""
        row = await self._conn.fetchrow(
            "INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status, order_id,"
            " expires_at) VALUES ($1, $2, $3, 'in_flight', $4, $5)"
            " ON CONFLICT DO NOTHING RETURNING key",
            self._tenant_id,
            key,
            fingerprint,
            order_id,
            expires_at,
        )
        return row is not None

    async def get(self, key: str) -> IdempotencyRecord | None:
        return await self._one("key", key)

    async def for_order(self, order_id: uuid.UUID) -> IdempotencyRecord | None:
        return await self._one("order_id", order_id)

    async def _one(self, column: str, value: Any) -> IdempotencyRecord | None:
        # The engine's codec decodes jsonb (and encodes it from a JSON string).
        row = await self._conn.fetchrow(
            "SELECT key, fingerprint, status, order_id, response_status, response_body"
            f" FROM idempotency_keys WHERE tenant_id = $1 AND {column} = $2",
            self._tenant_id,
            value,
        )
        return IdempotencyRecord(*row) if row else None

    async def complete_for_order(
        self, order_id: uuid.UUID, status: int, body: dict[str, Any]
    ) -> None:
        """Store the outcome a replay of the order's request answers with."""
        await self._conn.execute(
            "UPDATE idempotency_keys SET status = 'completed', response_status = $3,"
            " response_body = $4::jsonb WHERE tenant_id = $1 AND order_id = $2",
            self._tenant_id,
            order_id,
            status,
            json.dumps(body),
        )

    async def release_for_order(self, order_id: uuid.UUID) -> None:
        """Forget the key (a transient failure must not consume it)."""
        await self._conn.execute(
            "DELETE FROM idempotency_keys WHERE tenant_id = $1 AND order_id = $2",
            self._tenant_id,
            order_id,
        )

    async def purge(self, before: datetime) -> int:
        """Expired keys of every tenant (owner-run function: the cleanup job has no tenant)."""
        count: int = await self._conn.fetchval(
            "SELECT storefront_purge_idempotency_keys($1)", before
        )
        return count
