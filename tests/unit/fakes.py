"""In-memory stand-ins for the unit of work and its repositories (unit tests only)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from app.catalog.errors import MAX_STOCK, SkuTaken
from app.catalog.repository import ProductRecord
from app.core.money import Money
from app.identity.repository import UserRecord
from app.orders.repository import IdempotencyRecord, OrderRecord


class FakeProducts:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, tuple[uuid.UUID | None, ProductRecord]] = {}
        self.adjustments: list[tuple[uuid.UUID, int, str]] = []
        self.tenant_id: uuid.UUID | None = None

    def _mine(self) -> dict[uuid.UUID, ProductRecord]:
        return {pid: rec for pid, (tid, rec) in self.rows.items() if tid == self.tenant_id}

    async def add(
        self,
        product_id: uuid.UUID,
        sku: str,
        name: str,
        description: str | None,
        price: Money,
        stock: int,
        at: datetime,
    ) -> ProductRecord | None:
        if any(r.sku == sku for r in self._mine().values()):
            return None
        record = ProductRecord(product_id, sku, name, description, price, stock, 1, at, at)
        self.rows[product_id] = (self.tenant_id, record)
        return record

    async def get(self, product_id: uuid.UUID) -> ProductRecord | None:
        return self._mine().get(product_id)

    async def page(
        self, limit: int, after: Any, query: str | None, *, prefix: bool = False
    ) -> list[ProductRecord]:
        rows = sorted(self._mine().values(), key=lambda r: (r.created_at, r.id))
        if after:
            rows = [r for r in rows if (r.created_at, r.id) > after]
        return rows[: limit + 1]

    async def update(
        self, product_id: uuid.UUID, expected_version: int, changes: dict[str, Any], at: datetime
    ) -> ProductRecord | None:
        current = self._mine().get(product_id)
        if current is None or current.version != expected_version:
            return None
        if "sku" in changes and any(
            r.sku == changes["sku"] and r.id != product_id for r in self._mine().values()
        ):
            raise SkuTaken("taken")
        fields = {k: v for k, v in changes.items() if k in ("sku", "name", "description")}
        if "price_amount" in changes:
            fields["price"] = Money(changes["price_amount"], changes["price_currency"])
        updated = replace(current, **fields, version=current.version + 1, updated_at=at)
        self.rows[product_id] = (self.tenant_id, updated)
        return updated

    async def adjust_stock(
        self, product_id: uuid.UUID, delta: int, at: datetime
    ) -> ProductRecord | None:
        current = self._mine().get(product_id)
        if current is None or not 0 <= current.stock + delta <= MAX_STOCK:
            return None
        updated = replace(current, stock=current.stock + delta, version=current.version + 1)
        self.rows[product_id] = (self.tenant_id, updated)
        return updated

    async def restock(self, product_id: uuid.UUID, quantity: int, at: datetime) -> int:
        current = self._mine()[product_id]
        stock = min(current.stock + quantity, MAX_STOCK)
        self.rows[product_id] = (self.tenant_id, replace(current, stock=stock))
        return current.stock + quantity - stock

    async def prices(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, Money]:
        mine = self._mine()
        return {p: mine[p].price for p in product_ids if p in mine}

    async def record_adjustment(
        self, adjustment_id: uuid.UUID, product_id: uuid.UUID, delta: int, reason: str, at: datetime
    ) -> None:
        self.adjustments.append((product_id, delta, reason))


class FakeUsers:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, UserRecord] = {}
        self.tenant_id: uuid.UUID | None = None

    def _mine(self) -> dict[uuid.UUID, UserRecord]:
        return {k: u for k, u in self.rows.items() if u.tenant_id == self.tenant_id}

    async def add(
        self, user_id: uuid.UUID, email: str, password_hash: str, role: str
    ) -> UserRecord | None:
        if any(u.email == email for u in self._mine().values()):  # unique per tenant
            return None
        assert self.tenant_id is not None
        now = datetime.now(UTC)
        self.rows[user_id] = UserRecord(user_id, self.tenant_id, email, role, now, now)
        return self.rows[user_id]

    async def get(self, user_id: uuid.UUID, *, lock: bool = False) -> UserRecord | None:
        return self._mine().get(user_id)

    async def lock_owners(self) -> list[uuid.UUID]:
        return sorted(k for k, u in self._mine().items() if u.role == "owner")

    async def update(
        self, user_id: uuid.UUID, at: datetime, role: str | None, password_hash: str | None
    ) -> UserRecord | None:
        current = self._mine().get(user_id)
        if current is None:
            return None
        self.rows[user_id] = replace(current, role=role or current.role, updated_at=at)
        return self.rows[user_id]

    async def delete(self, user_id: uuid.UUID) -> bool:
        return self.rows.pop(user_id, None) is not None


class FakeRefreshTokens:
    def __init__(self) -> None:
        self.revoked_users: list[uuid.UUID] = []

    async def revoke_user(self, user_id: uuid.UUID, at: datetime) -> list[uuid.UUID]:
        self.revoked_users.append(user_id)
        return []


class FakeOrders:
    """Orders; placing and confirming also write the key, the outbox and the stock, as the one
    statement of the real repository does."""

    def __init__(
        self, products: FakeProducts, idempotency: FakeIdempotency, outbox: FakeOutbox
    ) -> None:
        self.rows: dict[uuid.UUID, OrderRecord] = {}
        self._products, self._idempotency, self._outbox = products, idempotency, outbox

    async def place(
        self, order: OrderRecord, event: tuple[uuid.UUID, dict[str, Any]]
    ) -> set[uuid.UUID]:
        self.rows[order.id] = replace(order, tenant_id=uuid.UUID(int=0))
        await self._outbox.add("order.placed", event[1], order.created_at)
        reserved = set()
        for line in order.lines:
            if await self._products.adjust_stock(line.product_id, -line.quantity, order.created_at):
                reserved.add(line.product_id)
        return reserved

    async def confirm(
        self,
        order_id: uuid.UUID,
        at: datetime,
        authorization_id: str,
        answer: dict[str, Any],
        event: tuple[uuid.UUID, dict[str, Any]],
    ) -> OrderRecord | None:
        moved = await self.transition(order_id, "pending", "confirmed", at, authorization_id)
        if moved is not None:
            await self._idempotency.complete_for_order(order_id, answer)
            await self._outbox.add("order.paid", event[1], at)
        return moved

    async def get(self, order_id: uuid.UUID, *, lock: bool = False) -> OrderRecord | None:
        return self.rows.get(order_id)

    async def transition(
        self,
        order_id: uuid.UUID,
        expected: str,
        status: str,
        at: datetime,
        authorization_id: str | None = None,
    ) -> OrderRecord | None:
        order = self.rows.get(order_id)
        if order is None or order.status != expected:
            return None
        authorization = authorization_id or order.authorization_id
        self.rows[order_id] = replace(
            order, status=status, updated_at=at, authorization_id=authorization
        )
        return self.rows[order_id]


class FakeIdempotency:
    def __init__(self, products: FakeProducts) -> None:
        self.rows: dict[str, IdempotencyRecord] = {}
        self._products = products

    async def claim_with_prices(
        self,
        key: str,
        fingerprint: bytes,
        order_id: uuid.UUID,
        expires_at: datetime,
        product_ids: list[uuid.UUID],
    ) -> tuple[bool, dict[uuid.UUID, Money]]:
        prices = await self._products.prices(product_ids)
        if key in self.rows:
            return False, prices
        self.rows[key] = IdempotencyRecord(key, fingerprint, "in_flight", order_id, None, None)
        return True, prices

    async def get(self, key: str) -> IdempotencyRecord | None:
        return self.rows.get(key)

    async def for_order(self, order_id: uuid.UUID) -> IdempotencyRecord | None:
        return next((r for r in self.rows.values() if r.order_id == order_id), None)

    async def complete_for_order(self, order_id: uuid.UUID, outcome: dict[str, Any]) -> None:
        record = await self.for_order(order_id)
        if record is not None:
            self.rows[record.key] = replace(
                record, status="completed", response_status=None, response_body=outcome
            )

    async def release_for_order(self, order_id: uuid.UUID) -> None:
        record = await self.for_order(order_id)
        if record is not None:
            del self.rows[record.key]


class FakeOutbox:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    async def add(self, topic: str, payload: dict[str, Any], at: datetime) -> uuid.UUID:
        self.events.append((topic, payload))
        return uuid.uuid4()


class FakeRevocations:
    def __init__(self) -> None:
        self.rows: dict[uuid.UUID, datetime] = {}

    async def add(self, ids: list[uuid.UUID], expires_at: datetime) -> None:
        for some_id in ids:
            self.rows[some_id] = max(self.rows.get(some_id, expires_at), expires_at)


class FakeInvalidations:
    """What was published on the invalidation channel (kept only if the unit of work commits,
    like NOTIFY)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, list[str]]] = []

    async def publish(self, topic: str, ids: Sequence[str]) -> None:
        self.messages.append((topic, list(ids)))


class FakeUnitOfWork:
    """Transactional like the real one: what a use case wrote is kept only if it commits."""

    def __init__(self, factory: FakeUnitOfWorkFactory, tenant_id: uuid.UUID | None) -> None:
        self.products = factory.products
        self.users = factory.users
        self.refresh_tokens = factory.refresh_tokens
        self.outbox = factory.outbox
        self.orders = factory.orders
        self.idempotency = factory.idempotency
        self.revocations = factory.revocations
        self.invalidations = factory.invalidations
        self.tenant_id = tenant_id
        self.commits = 0

    async def __aenter__(self) -> FakeUnitOfWork:
        self.products.tenant_id = self.users.tenant_id = self.tenant_id
        self._snapshot = (
            dict(self.products.rows),
            list(self.products.adjustments),
            dict(self.users.rows),
            list(self.outbox.events),
            dict(self.orders.rows),
            dict(self.idempotency.rows),
        )
        self._announced = (dict(self.revocations.rows), list(self.invalidations.messages))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.commits:
            (
                self.products.rows,
                self.products.adjustments,
                self.users.rows,
                self.outbox.events,
                self.orders.rows,
                self.idempotency.rows,
            ) = self._snapshot
            self.revocations.rows, self.invalidations.messages = self._announced

    async def commit(self, *, token: bool = True) -> None:
        self.commits += 1


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.products = FakeProducts()
        self.users = FakeUsers()
        self.refresh_tokens = FakeRefreshTokens()
        self.outbox = FakeOutbox()
        self.idempotency = FakeIdempotency(self.products)
        self.orders = FakeOrders(self.products, self.idempotency, self.outbox)
        self.revocations = FakeRevocations()
        self.invalidations = FakeInvalidations()
        self.opened: list[tuple[FakeUnitOfWork, bool]] = []

    def __call__(
        self,
        tenant_id: uuid.UUID | None = None,
        *,
        read_only: bool = False,
        strong: bool = False,
        node: object = None,
        single_statement: bool = False,
    ) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self, tenant_id)
        self.opened.append((uow, read_only))
        return uow


class RecordingOrderObserver:
    """An OrderObserver (app/orders/service.py) that keeps what it was told, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def order_outcome(self, outcome: str, reason: str = "") -> None:
        self.seen.append((outcome, reason))

    def idempotent_replay(self) -> None:
        self.seen.append(("replayed", ""))
