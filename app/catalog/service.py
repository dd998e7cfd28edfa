"""Catalog use cases. Each opens its own unit of work; reads are replica-routed."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from app.catalog.errors import (
    MAX_STOCK,
    InsufficientStock,
    ProductNotFound,
    SkuTaken,
    StockLimitExceeded,
    VersionMismatch,
)
from app.catalog.repository import ProductRecord
from app.core.clock import Clock
from app.core.money import Money
from app.core.pagination import Slice, decode_keyset, keyset_page
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read
from app.flags.rules import Flags, NoFlags

# On: `?q=` matches names and SKUs that start with q, instead of containing it anywhere.
SEARCH_PREFIX = "catalog.search_prefix"


@dataclass(frozen=True, slots=True)
class ProductChanges:
    sku: str | None = None
    name: str | None = None
    description: str | None = None
    clear_description: bool = False
    price: Money | None = None

    def columns(self) -> dict[str, Any]:
        columns: dict[str, Any] = {}
        if self.sku is not None:
            columns["sku"] = self.sku
        if self.name is not None:
            columns["name"] = self.name
        if self.description is not None or self.clear_description:
            columns["description"] = self.description
        if self.price is not None:
            columns |= {"price_amount": self.price.amount, "price_currency": self.price.currency}
        return columns


@dataclass(frozen=True, slots=True)
class StockAdjustmentResult:
    id: uuid.UUID
    delta: int
    reason: str
    product: ProductRecord


class CatalogService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, flags: Flags | None = None
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._flags = flags or NoFlags()

    async def create(
        self,
        tenant_id: uuid.UUID,
        sku: str,
        name: str,
        description: str | None,
        price: Money,
        stock: int,
    ) -> ProductRecord:
        async with self._uow(tenant_id) as uow:
            product = await uow.products.add(
                uuid.uuid4(), sku, name, description, price, stock, self._clock.now()
            )
            if product is None:
                raise SkuTaken(f"SKU '{sku}' already exists")
            await _changed(uow, product)
            await uow.commit()
        return product

    async def get(self, tenant_id: uuid.UUID, product_id: uuid.UUID) -> ProductRecord:
        product = await read(self._uow, tenant_id, lambda uow: uow.products.get(product_id))
        if product is None:
            raise ProductNotFound()
        return product

    async def list(
        self, tenant_id: uuid.UUID, limit: int, cursor: str | None, query: str | None
    ) -> Slice[ProductRecord]:
        after = decode_keyset(cursor)
        # Only searches ask the flag (a dict lookup and a hash); plain listing pays nothing.
        prefix = query is not None and await self._flags.enabled(SEARCH_PREFIX, tenant_id)
        rows = await read(
            self._uow, tenant_id, lambda uow: uow.products.page(limit, after, query, prefix=prefix)
        )
        return keyset_page(rows, limit)

    async def update(
        self,
        tenant_id: uuid.UUID,
        product_id: uuid.UUID,
        accepted_versions: frozenset[int] | None,
        changes: ProductChanges,
    ) -> ProductRecord:
        async with self._uow(tenant_id) as uow:
            current = await uow.products.get(product_id)
            if current is None:
                raise ProductNotFound()
            if accepted_versions is not None and current.version not in accepted_versions:
                raise VersionMismatch("the product changed since you read it; fetch it again")
            updated = await uow.products.update(
                product_id, current.version, changes.columns(), self._clock.now()
            )
            if updated is None:  # lost a race with a concurrent writer between get and update
                raise VersionMismatch("the product changed since you read it; fetch it again")
            await _changed(uow, updated)
            await uow.commit()
        return updated

    async def adjust_stock(
        self, tenant_id: uuid.UUID, product_id: uuid.UUID, delta: int, reason: str
    ) -> StockAdjustmentResult:
        now = self._clock.now()
        adjustment_id = uuid.uuid4()
        async with self._uow(tenant_id) as uow:
            product = await uow.products.adjust_stock(product_id, delta, now)
            if product is None:
                current = await uow.products.get(product_id)
                if current is None:
                    raise ProductNotFound()
                if current.stock + delta < 0:
                    raise InsufficientStock("stock cannot go below zero")
                raise StockLimitExceeded(f"stock cannot exceed {MAX_STOCK}")
            await uow.products.record_adjustment(adjustment_id, product_id, delta, reason, now)
            await _changed(uow, product)
            await uow.commit()
        return StockAdjustmentResult(adjustment_id, delta, reason, product)


async def _changed(uow: UnitOfWork, product: ProductRecord) -> None:
    """`product.changed`, in the transaction of the change (the outbox publishes it)."""
    payload = {"product_id": str(product.id), "version": product.version, "stock": product.stock}
    await uow.outbox.add("product.changed", payload, product.updated_at)
