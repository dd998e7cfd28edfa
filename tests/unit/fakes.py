"""In-memory stand-ins for the unit of work and the product repository (unit tests only)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import datetime
from typing import Any

from app.catalog.errors import MAX_STOCK, SkuTaken
from app.catalog.repository import ProductRecord
from app.core.money import Money


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

    async def page(self, limit: int, after: Any, query: str | None) -> list[ProductRecord]:
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

    async def record_adjustment(
        self, adjustment_id: uuid.UUID, product_id: uuid.UUID, delta: int, reason: str, at: datetime
    ) -> None:
        self.adjustments.append((product_id, delta, reason))


class FakeUnitOfWork:
    """Transactional like the real one: what a use case wrote is kept only if it commits."""

    def __init__(self, products: FakeProducts, tenant_id: uuid.UUID | None) -> None:
        self.products = products
        self.tenant_id = tenant_id
        self.commits = 0

    async def __aenter__(self) -> FakeUnitOfWork:
        self.products.tenant_id = self.tenant_id
        self._snapshot = (dict(self.products.rows), list(self.products.adjustments))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if not self.commits:
            self.products.rows, self.products.adjustments = self._snapshot

    async def commit(self) -> None:
        self.commits += 1


class FakeUnitOfWorkFactory:
    def __init__(self) -> None:
        self.products = FakeProducts()
        self.opened: list[tuple[FakeUnitOfWork, bool]] = []

    def __call__(
        self, tenant_id: uuid.UUID | None = None, *, read_only: bool = False, strong: bool = False
    ) -> FakeUnitOfWork:
        uow = FakeUnitOfWork(self.products, tenant_id)
        self.opened.append((uow, read_only))
        return uow
