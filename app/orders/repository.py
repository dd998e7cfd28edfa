"""Orders and idempotency keys: SQL on the unit of work's connection."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from app.core.money import Money
from app.db.repository import TenantScoped
from app.events.types import current_version


@dataclass(frozen=True, slots=True)
class OrderLineRecord:
    product_id: uuid.UUID
    quantity: int
    unit_amount: int
    # quantity x unit_amount (stored in `order_lines.line_amount`); left out, it is computed.
    line_amount: int = 0

    def __post_init__(self) -> None:
        if not self.line_amount:  # 0 only when unit_amount is 0: the product is 0 as well
            object.__setattr__(self, "line_amount", self.quantity * self.unit_amount)


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


# One statement (one round trip) for the whole of placing an order: the order, its lines, its
# `order.placed` outbox event (the NOTIFY trigger is per statement) and the reservation. The
# order's lines reference the order: the foreign-key checks run at the end of the statement.
# Products are locked in id order (`locked`: FOR UPDATE over the sorted rows), so concurrent
# multi-line orders cannot deadlock; the UPDATE re-checks its guard on the latest row version
# (READ COMMITTED), so stock never goes below zero.
_PLACE_SQL = f"""
WITH new_order AS (
    INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token,
                        payment_key, created_at, updated_at)
    VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7, $7)),
new_lines AS (
    INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount, line_amount)
    SELECT $1, u.product_id, $2, u.quantity, u.unit_amount, u.line_amount
    FROM unnest($8::uuid[], $9::int[], $10::bigint[], $13::bigint[])
         AS u(product_id, quantity, unit_amount, line_amount)),
event AS (
    INSERT INTO outbox (id, tenant_id, topic, version, payload, created_at, next_attempt_at)
    VALUES ($11, $2, 'order.placed', {current_version("order.placed")}, $12::jsonb, $7, $7)),
locked AS (
    SELECT id FROM products WHERE tenant_id = $2 AND id = ANY($8::uuid[])
    ORDER BY id FOR UPDATE),
reserved AS (
    UPDATE products p SET stock = p.stock - u.quantity, version = p.version + 1,
                          updated_at = $7
    FROM locked, unnest($8::uuid[], $9::int[]) AS u(product_id, quantity)
    WHERE p.tenant_id = $2 AND p.id = locked.id AND u.product_id = locked.id
      AND p.stock >= u.quantity
    RETURNING p.id)
SELECT id FROM reserved
"""

# The saga's confirmation in one statement: the compare-and-set on the status, the key's stored
# answer and the `order.paid` event, the last two only when the compare-and-set moved the order.
_CONFIRM_SQL = f"""
WITH moved AS (
    UPDATE orders SET status = 'confirmed', updated_at = $3, authorization_id = $4
    WHERE tenant_id = $1 AND id = $2 AND status = 'pending'
    RETURNING {_ORDER_COLUMNS}),
answered AS (
    UPDATE idempotency_keys SET status = 'completed', response_status = NULL,
                                response_body = $5::jsonb
    WHERE tenant_id = $1 AND order_id = $2 AND EXISTS (SELECT 1 FROM moved)),
event AS (
    INSERT INTO outbox (id, tenant_id, topic, version, payload, created_at, next_attempt_at)
    SELECT $6, $1, 'order.paid', {current_version("order.paid")}, $7::jsonb, $3, $3
    WHERE EXISTS (SELECT 1 FROM moved))
SELECT {_ORDER_COLUMNS} FROM moved
"""


class OrderRepository(TenantScoped):
    async def place(
        self, order: OrderRecord, event: tuple[uuid.UUID, dict[str, Any]]
    ) -> set[uuid.UUID]:
        """Insert the pending `order` (at its `created_at`) with its lines and `order.placed`
        event, and reserve every line's units with a guarded decrement; returns the products
        whose units were reserved (fewer than the lines: not enough stock, and the caller rolls
        back)."""
        rows = await self._conn.fetch(
            _PLACE_SQL,
            order.id,
            self._tenant_id,
            order.total_amount,
            order.currency,
            order.payment_token,
            order.payment_key,
            order.created_at,
            [ln.product_id for ln in order.lines],
            [ln.quantity for ln in order.lines],
            [ln.unit_amount for ln in order.lines],
            event[0],
            json.dumps(event[1]),
            [ln.line_amount for ln in order.lines],
        )
        return {row[0] for row in rows}

    async def confirm(
        self,
        order_id: uuid.UUID,
        at: datetime,
        authorization_id: str,
        answer: dict[str, Any],
        event: tuple[uuid.UUID, dict[str, Any]],
    ) -> OrderRecord | None:
        """pending -> confirmed, storing `answer` for the key's replays and the `order.paid`
        event; None (and nothing written) when someone else moved the order."""
        row = await self._conn.fetchrow(
            _CONFIRM_SQL,
            self._tenant_id,
            order_id,
            at,
            authorization_id,
            json.dumps(answer),
            event[0],
            json.dumps(event[1]),
        )
        return OrderRecord(*row) if row else None

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

    async def exists(self, order_id: uuid.UUID) -> bool:
        found: bool = await self._conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM orders WHERE tenant_id = $1 AND id = $2)",
            self._tenant_id,
            order_id,
        )
        return found

    async def page(self, limit: int, after: tuple[datetime, uuid.UUID] | None) -> list[OrderRecord]:
        rows = await self._page(_ORDER_COLUMNS, "orders", limit, after)
        return await self._with_lines([OrderRecord(*row) for row in rows])

    async def _with_lines(self, orders: list[OrderRecord]) -> list[OrderRecord]:
        if not orders:
            return orders
        # coalesce: this release also runs on the schema before the backfill (migration 0010,
        # lines the previous release wrote have no amount); the next release reads the column.
        rows = await self._conn.fetch(
            "SELECT order_id, product_id, quantity, unit_amount,"
            " coalesce(line_amount, quantity::bigint * unit_amount) FROM order_lines"
            " WHERE tenant_id = $1 AND order_id = ANY($2::uuid[]) ORDER BY order_id, product_id",
            self._tenant_id,
            [order.id for order in orders],
        )
        lines: dict[uuid.UUID, list[OrderLineRecord]] = {}
        for row in rows:
            lines.setdefault(row[0], []).append(OrderLineRecord(row[1], row[2], row[3], row[4]))
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
    async def claim_with_prices(
        self,
        key: str,
        fingerprint: bytes,
        order_id: uuid.UUID,
        expires_at: datetime,
        product_ids: list[uuid.UUID],
    ) -> tuple[bool, dict[uuid.UUID, Money]]:
        """Insert the key as in flight for the order about to be made, and read the products'
        prices, in one round trip: (claimed, prices of the products that exist). Not claimed:
        the key exists (then `get` it). The outer join returns a row even when no product
        matches."""
        rows = await self._conn.fetch(
            "WITH claimed AS (INSERT INTO idempotency_keys (tenant_id, key, fingerprint, status,"
            " order_id, expires_at) VALUES ($1, $2, $3, 'in_flight', $4, $5)"
            " ON CONFLICT DO NOTHING RETURNING key)"
            " SELECT EXISTS (SELECT 1 FROM claimed), p.id, p.price_amount, p.price_currency"
            " FROM (SELECT 1) AS one LEFT JOIN products p"
            " ON p.tenant_id = $1 AND p.id = ANY($6::uuid[])",
            self._tenant_id,
            key,
            fingerprint,
            order_id,
            expires_at,
            product_ids,
        )
        prices = {row[1]: Money(row[2], row[3]) for row in rows if row[1] is not None}
        return bool(rows[0][0]), prices

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

    async def complete_for_order(self, order_id: uuid.UUID, outcome: dict[str, Any]) -> None:
        """Store the outcome a replay of the order's request answers with."""
        await self._conn.execute(
            "UPDATE idempotency_keys SET status = 'completed', response_status = NULL,"
            " response_body = $3::jsonb WHERE tenant_id = $1 AND order_id = $2",
            self._tenant_id,
            order_id,
            json.dumps(outcome),
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


@dataclass(frozen=True, slots=True)
class OrderEventRecord:
    """One status an order took: `seq` counts per order from 1 (gap-free, in commit order);
    `position` orders the tenant's events (the tenant-wide stream's resume point)."""

    order_id: uuid.UUID
    seq: int
    status: str
    occurred_at: datetime
    position: int


_EVENT_COLUMNS = "order_id, seq, status, occurred_at, position"


class OrderEventRepository(TenantScoped):
    """`order_events` (written by a trigger on `orders`, migration 0015): read only."""

    async def of_order(self, order_id: uuid.UUID, after: int, limit: int) -> list[OrderEventRecord]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM order_events WHERE tenant_id = $1 AND order_id = $2"
            " AND seq > $3 ORDER BY seq LIMIT $4",
            self._tenant_id,
            order_id,
            after,
            limit,
        )
        return [OrderEventRecord(*row) for row in rows]

    async def of_tenant(self, after: int, limit: int) -> list[OrderEventRecord]:
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM order_events WHERE tenant_id = $1 AND position > $2"
            " ORDER BY position LIMIT $3",
            self._tenant_id,
            after,
            limit,
        )
        return [OrderEventRecord(*row) for row in rows]

    async def head(self) -> int:
        """The tenant's newest position (0: no event yet)."""
        head: int = await self._conn.fetchval(
            "SELECT coalesce(max(position), 0) FROM order_events WHERE tenant_id = $1",
            self._tenant_id,
        )
        return head

    async def these(self, keys: list[tuple[uuid.UUID, int]]) -> list[OrderEventRecord]:
        """The events named by (order, seq): what a batch of notifications announced."""
        rows = await self._conn.fetch(
            f"SELECT {_EVENT_COLUMNS} FROM order_events"
            " JOIN unnest($2::uuid[], $3::bigint[]) AS k(o, s) ON order_id = k.o AND seq = k.s"
            " WHERE tenant_id = $1",
            self._tenant_id,
            [order for order, _ in keys],
            [seq for _, seq in keys],
        )
        return [OrderEventRecord(*row) for row in rows]
