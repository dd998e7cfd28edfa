"""The order saga on a fake unit of work and a fake payment gateway (no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from app.core.clock import FixedClock
from app.core.money import Money
from app.orders.errors import (
    MAX_ORDER_TOTAL,
    IdempotencyMismatch,
    InsufficientStock,
    QuantityLimitExceeded,
    TotalLimitExceeded,
)
from app.orders.service import OrderService
from app.payments.breakers import ProviderAccount
from app.payments.gateway import PaymentDeclined, PaymentUnavailable
from tests.unit.fakes import FakeUnitOfWorkFactory, RecordingOrderObserver

TENANT = uuid.uuid4()
NOW = datetime(2026, 11, 23, tzinfo=UTC)


class FakeGateway:
    """Answers by token; remembers every authorization key it saw."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    async def authorize(
        self, account: ProviderAccount, idempotency_key: str, token: str, amount: Money
    ) -> str:
        assert account == ProviderAccount.of_tenant(TENANT)
        self.keys.append(idempotency_key)
        if token == "declined":
            raise PaymentDeclined("no")
        if token == "down":
            raise PaymentUnavailable("down")
        return "auth-" + idempotency_key

    async def void(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None:
        self.keys.append(idempotency_key)


@pytest.fixture
def world() -> tuple[OrderService, FakeUnitOfWorkFactory, FakeGateway, uuid.UUID]:
    uows, gateway = FakeUnitOfWorkFactory(), FakeGateway()
    service = OrderService(uows, FixedClock(NOW), gateway, recovery_age_seconds=60)  # type: ignore[arg-type]
    return service, uows, gateway, uuid.uuid4()


async def _seed(uows: FakeUnitOfWorkFactory, product: uuid.UUID, stock: int = 3) -> None:
    uows.products.tenant_id = TENANT
    await uows.products.add(product, "SKU", "Mug", None, Money(500, "EUR"), stock, NOW)


async def _stock(uows: FakeUnitOfWorkFactory, product: uuid.UUID) -> int:
    record = await uows.products.get(product)
    assert record is not None
    return record.stock


async def test_confirmed_order_keeps_its_stock_and_stores_the_answer(world: Any) -> None:
    service, uows, gateway, product = world
    await _seed(uows, product)
    outcome = await service.place(TENANT, "k", b"fp", [(product, 2)], "ok")
    assert outcome.order is not None
    assert outcome.refusal is None
    assert (outcome.order.status, outcome.order.total_amount) == ("confirmed", 1000)
    assert await _stock(uows, product) == 1
    assert gateway.keys == [f"{TENANT}:k"]  # the client's key, not the order id
    replay = await service.place(TENANT, "k", b"fp", [(product, 2)], "ok")
    assert replay.replayed
    # The stored domain outcome (not an HTTP body), without the payment's token and key.
    assert replay.order == replace(outcome.order, payment_token="", payment_key="")
    with pytest.raises(IdempotencyMismatch):
        await service.place(TENANT, "k", b"other", [(product, 1)], "ok")
    assert [t for t, _ in uows.outbox.events] == ["order.placed", "order.paid"]


async def test_a_decline_restocks_and_is_final(world: Any) -> None:
    service, uows, _, product = world
    await _seed(uows, product)
    outcome = await service.place(TENANT, "k", b"fp", [(product, 2)], "declined")
    assert outcome.order is None
    assert isinstance(outcome.refusal, PaymentDeclined)
    assert await _stock(uows, product) == 3
    assert (await uows.idempotency.get("k")).status == "completed"  # type: ignore[union-attr]


async def test_an_outage_restocks_and_frees_the_key(world: Any) -> None:
    service, uows, _, product = world
    await _seed(uows, product)
    with pytest.raises(PaymentUnavailable):
        await service.place(TENANT, "k", b"fp", [(product, 2)], "down")
    assert await _stock(uows, product) == 3
    assert await uows.idempotency.get("k") is None
    assert [o.status for o in uows.orders.rows.values()] == ["failed"]
    retried = await service.place(TENANT, "k", b"fp", [(product, 2)], "ok")
    assert retried.order is not None
    assert retried.order.status == "confirmed"


async def test_not_enough_stock_keeps_nothing(world: Any) -> None:
    service, uows, gateway, product = world
    await _seed(uows, product, stock=1)
    with pytest.raises(InsufficientStock):
        await service.place(TENANT, "k", b"fp", [(product, 2)], "ok")
    assert uows.orders.rows == {}
    assert uows.idempotency.rows == {}  # the key was not consumed
    assert gateway.keys == []  # and the provider never asked


async def test_bounds_on_units_and_total_keep_nothing(world: Any) -> None:
    service, uows, gateway, product = world
    await _seed(uows, product, stock=5000)
    with pytest.raises(QuantityLimitExceeded):  # 2 x 600 of one product is one line of 1,200
        await service.place(TENANT, "k", b"fp", [(product, 600), (product, 600)], "ok")
    expensive = uuid.uuid4()
    await uows.products.add(expensive, "GOLD", "Gold", None, Money(10**9, "EUR"), 500, NOW)
    with pytest.raises(TotalLimitExceeded):  # 101 x 10^9 > 10^11
        await service.place(TENANT, "k", b"fp", [(expensive, 101)], "ok")
    assert uows.orders.rows == {}
    assert uows.idempotency.rows == {}
    assert gateway.keys == []
    fits = await service.place(TENANT, "k", b"fp", [(expensive, 100)], "ok")
    assert fits.order is not None
    assert fits.order.total_amount == MAX_ORDER_TOTAL


async def test_every_answer_is_reported_to_the_observer_once() -> None:
    uows, gateway, observer = FakeUnitOfWorkFactory(), FakeGateway(), RecordingOrderObserver()
    service = OrderService(uows, FixedClock(NOW), gateway, 60, observer)  # type: ignore[arg-type]
    product = uuid.uuid4()
    await _seed(uows, product, stock=4)
    placed = await service.place(TENANT, "a", b"fp", [(product, 1)], "ok")
    await service.place(TENANT, "a", b"fp", [(product, 1)], "ok")  # a replay
    await service.place(TENANT, "b", b"fp", [(product, 1)], "declined")
    with pytest.raises(InsufficientStock):
        await service.place(TENANT, "c", b"fp", [(product, 9)], "ok")
    with pytest.raises(PaymentUnavailable):
        await service.place(TENANT, "d", b"fp", [(product, 1)], "down")
    assert placed.order is not None
    await service.cancel(TENANT, placed.order.id)
    await service.cancel(TENANT, placed.order.id)  # already cancelled: no change
    assert observer.seen == [
        ("placed", ""),
        ("replayed", ""),
        ("rejected", "payment.declined"),
        ("rejected", "inventory.insufficient"),
        ("rejected", "payment.unavailable"),
        ("cancelled", ""),
    ]
