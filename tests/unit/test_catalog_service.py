"""Catalog use cases on a fake unit of work: the rules, without I/O."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from app.catalog.errors import InsufficientStock, ProductNotFound, SkuTaken, VersionMismatch
from app.catalog.service import CatalogService, ProductChanges
from app.core.clock import FixedClock
from app.core.money import Money
from app.core.pagination import InvalidCursor
from tests.unit.fakes import FakeUnitOfWorkFactory

A, B = uuid.uuid4(), uuid.uuid4()
NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def uows() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def service(uows: FakeUnitOfWorkFactory) -> CatalogService:
    return CatalogService(uows, FixedClock(NOW))


async def test_create_commits_once_and_stamps_the_clock(
    service: CatalogService, uows: FakeUnitOfWorkFactory
) -> None:
    product = await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 3)
    assert product.created_at == NOW
    assert [(uow.commits, read_only) for uow, read_only in uows.opened] == [(1, False)]


async def test_duplicate_sku_raises_without_commit(
    service: CatalogService, uows: FakeUnitOfWorkFactory
) -> None:
    await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 3)
    with pytest.raises(SkuTaken):
        await service.create(A, "SKU", "Other", None, Money(1, "EUR"), 1)
    assert uows.opened[-1][0].commits == 0
    # Another tenant may use the same SKU.
    await service.create(B, "SKU", "Theirs", None, Money(1, "EUR"), 1)


async def test_reads_use_read_only_units_of_work(
    service: CatalogService, uows: FakeUnitOfWorkFactory
) -> None:
    product = await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 3)
    await service.get(A, product.id)
    await service.list(A, 10, None, None)
    assert [read_only for _, read_only in uows.opened] == [False, True, True]
    with pytest.raises(ProductNotFound):
        await service.get(B, product.id)


async def test_update_checks_the_version(service: CatalogService) -> None:
    product = await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 3)
    with pytest.raises(VersionMismatch):
        await service.update(A, product.id, frozenset({7}), ProductChanges(name="X"))
    updated = await service.update(A, product.id, frozenset({1}), ProductChanges(name="X"))
    assert (updated.name, updated.version) == ("X", 2)
    anyway = await service.update(A, product.id, None, ProductChanges(price=Money(5, "USD")))
    assert anyway.price == Money(5, "USD")
    with pytest.raises(ProductNotFound):
        await service.update(B, product.id, None, ProductChanges(name="Y"))


async def test_stock_never_goes_below_zero(
    service: CatalogService, uows: FakeUnitOfWorkFactory
) -> None:
    product = await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 1)
    result = await service.adjust_stock(A, product.id, -1, "sold")
    assert result.product.stock == 0
    with pytest.raises(InsufficientStock):
        await service.adjust_stock(A, product.id, -1, "sold")
    assert uows.opened[-1][0].commits == 0
    assert uows.products.adjustments == [(product.id, -1, "sold")]
    with pytest.raises(ProductNotFound):
        await service.adjust_stock(A, uuid.uuid4(), 1, "restock")


async def test_pagination_cursor_round_trip_and_tampering(service: CatalogService) -> None:
    for i in range(3):
        await service.create(A, f"S{i}", "N", None, Money(1, "EUR"), 1)
    first = await service.list(A, 2, None, None)
    assert len(first.items) == 2
    assert first.next_cursor
    second = await service.list(A, 2, first.next_cursor, None)
    assert len(second.items) == 1
    assert second.next_cursor is None
    for bad in ("%%%", "WyJ4Il0", "WyJub3QtYS1kYXRlIiwgIngiXQ"):
        with pytest.raises(InvalidCursor):
            await service.list(A, 2, bad, None)


async def test_every_change_emits_product_changed_in_its_transaction(
    service: CatalogService, uows: FakeUnitOfWorkFactory
) -> None:
    product = await service.create(A, "SKU", "Name", None, Money(100, "EUR"), 3)
    await service.adjust_stock(A, product.id, 2, "count")
    with pytest.raises(InsufficientStock):  # refused: rolled back, no event
        await service.adjust_stock(A, product.id, -50, "oops")
    topics = [(topic, payload["stock"]) for topic, payload in uows.outbox.events]
    assert topics == [("product.changed", 3), ("product.changed", 5)]
