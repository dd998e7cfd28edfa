"""Placing, reading and cancelling orders: the saga (reserve stock -> authorize the payment ->
confirm) with idempotency keys, compensation, and recovery of orders a crash left pending.

Each step is its own transaction, and the order's `status` is the saga's persisted step, so a
process that dies between steps leaves a `pending` order that `recover()` finishes or
compensates. The idempotency key is claimed in the same transaction that reserves the stock and
creates the order, and completed in the one that settles it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

import structlog

from app.core.clock import Clock
from app.core.errors import DomainError
from app.core.money import Money
from app.core.pagination import Slice, decode_keyset, keyset_page
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read
from app.orders.errors import (
    MAX_ORDER_TOTAL,
    MAX_UNITS_PER_PRODUCT,
    IdempotencyInFlight,
    IdempotencyMismatch,
    InsufficientStock,
    MixedCurrencies,
    OrderNotCancellable,
    OrderNotFound,
    QuantityLimitExceeded,
    TotalLimitExceeded,
    UnknownProduct,
)
from app.orders.outcomes import Outcome, replayed, stored
from app.orders.repository import OrderLineRecord, OrderRecord
from app.payments.breakers import ProviderAccount
from app.payments.gateway import (
    PaymentDeclined,
    PaymentGateway,
    PaymentRejected,
    PaymentUnavailable,
)

log = structlog.get_logger(__name__)
IDEMPOTENCY_RETENTION = timedelta(hours=24)


class OrderObserver(Protocol):
    """Where the saga reports its outcomes (the container passes the process's metrics)."""

    def order_outcome(self, outcome: str, reason: str = "") -> None:
        """`placed`, `rejected` (reason: the problem code), `cancelled`, `recovered`."""
        ...

    def idempotent_replay(self) -> None: ...


class Unobserved:
    """An OrderObserver that records nothing (one-shot commands, unit tests that ignore it)."""

    def order_outcome(self, outcome: str, reason: str = "") -> None:
        pass

    def idempotent_replay(self) -> None:
        pass


def fingerprint(body: dict[str, Any]) -> bytes:
    """Identity of a request body for idempotency: canonical JSON, hashed."""
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).digest()


class OrderService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        gateway: PaymentGateway,
        recovery_age_seconds: float,
        observer: OrderObserver | None = None,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._gateway = gateway
        self._recovery_age = timedelta(seconds=recovery_age_seconds)
        self._observer = observer or Unobserved()

    async def place(
        self,
        tenant_id: uuid.UUID,
        idempotency_key: str,
        request_fingerprint: bytes,
        items: list[tuple[uuid.UUID, int]],
        payment_token: str,
    ) -> Outcome:
        """The saga; every answer is reported to the observer: a replay as a replay, a refusal
        (raised, or kept by the key) as `rejected` with its code, a confirmed order as `placed`.
        The answer is a domain outcome: the edge renders it for the caller's API version."""
        try:
            outcome = await self._place(
                tenant_id, idempotency_key, request_fingerprint, items, payment_token
            )
        except DomainError as error:
            self._observer.order_outcome("rejected", error.code)
            raise
        if outcome.replayed:
            self._observer.idempotent_replay()
        elif outcome.refusal is not None:
            self._observer.order_outcome("rejected", outcome.refusal.code)
        else:
            self._observer.order_outcome("placed")
        return outcome

    async def _place(
        self,
        tenant_id: uuid.UUID,
        idempotency_key: str,
        request_fingerprint: bytes,
        items: list[tuple[uuid.UUID, int]],
        payment_token: str,
    ) -> Outcome:
        quantities: dict[uuid.UUID, int] = {}
        for product_id, quantity in items:  # the same product twice is one line
            quantities[product_id] = quantities.get(product_id, 0) + quantity
        for product_id, quantity in quantities.items():
            if quantity > MAX_UNITS_PER_PRODUCT:
                raise QuantityLimitExceeded(
                    f"{quantity} units of product {product_id}: at most"
                    f" {MAX_UNITS_PER_PRODUCT} per order"
                )
        order_id = uuid.uuid4()
        now = self._clock.now()
        async with self._uow(tenant_id) as uow:
            claimed, prices = await uow.idempotency.claim_with_prices(
                idempotency_key,
                request_fingerprint,
                order_id,
                now + IDEMPOTENCY_RETENTION,
                sorted(quantities),
            )
            if not claimed:
                return await self._replay(uow, tenant_id, idempotency_key, request_fingerprint)
            unknown = sorted(set(quantities) - set(prices))
            if unknown:
                raise UnknownProduct(f"no product {unknown[0]}")
            currencies = {money.currency for money in prices.values()}
            if len(currencies) > 1:
                raise MixedCurrencies("all products of an order must share one currency")
            lines = tuple(
                OrderLineRecord(p, q, prices[p].amount) for p, q in sorted(quantities.items())
            )
            total = Money(sum(x.quantity * x.unit_amount for x in lines), currencies.pop())
            if total.amount > MAX_ORDER_TOTAL:
                raise TotalLimitExceeded(
                    f"the total {total.amount} exceeds {MAX_ORDER_TOTAL} (minor units)"
                )
            payment_key = f"{tenant_id}:{idempotency_key}"
            # One statement: order, lines, `order.placed`, and the reservation, all or nothing
            # (last, so the products' row locks are held only until the commit right after).
            order = OrderRecord(
                order_id, tenant_id, "pending", total.amount, total.currency, payment_token,
                payment_key, None, now, now, lines,
            )  # fmt: skip
            reserved = await uow.orders.place(order, (uuid.uuid4(), {"order_id": str(order_id)}))
            for line in lines:
                if line.product_id not in reserved:
                    raise InsufficientStock(f"not enough stock of product {line.product_id}")
            # No read-your-writes token: the settling transaction's, later, supersedes it.
            await uow.commit(token=False)
        return await self._settle(order)

    async def _replay(
        self, uow: UnitOfWork, tenant_id: uuid.UUID, key: str, request_fingerprint: bytes
    ) -> Outcome:
        existing = await uow.idempotency.get(key)
        if existing is None:  # released between our insert attempt and this read
            raise IdempotencyInFlight("retry the request")
        if existing.fingerprint != request_fingerprint:
            raise IdempotencyMismatch("this idempotency key was used with a different request")
        outcome = None
        if existing.status == "completed" and existing.response_body is not None:
            outcome = replayed(tenant_id, existing.response_status, existing.response_body)
        if outcome is None:
            raise IdempotencyInFlight("the first request with this key is still in progress")
        return outcome

    async def _settle(self, order: OrderRecord) -> Outcome:
        """Authorize the pending `order`, then confirm (or compensate). The provider key is the
        client's (tenant, Idempotency-Key): a retry after an outage gets an authorization that
        completed after our timeout instead of a second hold. Any other failure (a crash)
        leaves the order pending for `recover()`."""
        tenant_id, order_id, lines = order.tenant_id, order.id, order.lines
        try:
            authorization = await self._gateway.authorize(
                ProviderAccount.of_tenant(tenant_id),
                order.payment_key,
                order.payment_token,
                Money(order.total_amount, order.currency),
            )
        except (PaymentDeclined, PaymentRejected) as refused:
            final = Outcome(refusal=refused)
            settled = await self._compensate(tenant_id, order_id, lines, "payment_failed", final)
            return settled or final
        except PaymentUnavailable:
            await self._compensate(tenant_id, order_id, lines, "failed", None)
            raise
        return await self._confirm(
            replace(order, status="confirmed", authorization_id=authorization)
        )

    async def _confirm(self, confirmed: OrderRecord) -> Outcome:
        """`confirmed` is the order as the compare-and-set makes it (but for `updated_at`): its
        answer and event are built before the one statement that stores them."""
        now = self._clock.now()
        order = replace(confirmed, updated_at=now)
        authorization_id = order.authorization_id
        assert authorization_id is not None
        # One statement (the compare-and-set, the stored answer, `order.paid`): no BEGIN/COMMIT.
        async with self._uow(order.tenant_id, single_statement=True) as uow:
            answer, event = stored(Outcome(order)), (uuid.uuid4(), _sale(order))
            moved = await uow.orders.confirm(order.id, now, authorization_id, answer, event)
            if not moved:
                found = await uow.orders.get(order.id)
                assert found is not None
                order = found
            await uow.commit()
        if moved or order.authorization_id == authorization_id:
            return Outcome(order)
        # Someone else settled it meanwhile (recovery compensated it): release our hold.
        await self._release_hold(order.tenant_id, order.payment_key, authorization_id)
        raise PaymentUnavailable("the order was settled without this payment; retry the request")

    async def _release_hold(
        self, tenant_id: uuid.UUID, payment_key: str, authorization_id: str
    ) -> None:
        account = ProviderAccount.of_tenant(tenant_id)
        try:
            await self._gateway.void(account, f"{payment_key}:void", authorization_id)
        except DomainError as error:  # the provider lets unused holds lapse
            log.warning("orders.void_failed", authorization=authorization_id, error=repr(error))

    async def _compensate(
        self,
        tenant_id: uuid.UUID,
        order_id: uuid.UUID,
        lines: tuple[OrderLineRecord, ...],
        status: str,
        final: Outcome | None,
    ) -> Outcome | None:
        """Give the stock back. A refusal is a final answer (the key replays it); a provider
        outage is not, so the key is released for a retry. Returns the request's answer (what
        someone else stored, when they settled the order first)."""
        now = self._clock.now()
        async with self._uow(tenant_id) as uow:
            # The compare-and-set on the status is the guard: only one settlement restocks.
            if not await uow.orders.transition(order_id, "pending", status, now):
                # Settled by someone else meanwhile: answer what they stored.
                key = await uow.idempotency.for_order(order_id)
                if key is not None and key.response_body is not None:
                    theirs = replayed(tenant_id, key.response_status, key.response_body)
                    if theirs is not None:
                        return replace(theirs, replayed=False)
                raise PaymentUnavailable("the order was settled elsewhere; retry the request")
            await _restock(uow, order_id, lines, now)
            if final is not None:
                await uow.idempotency.complete_for_order(order_id, stored(final))
            else:
                await uow.idempotency.release_for_order(order_id)
            await uow.commit()
        return final

    async def recover(self, limit: int = 100) -> int:
        """Finish or compensate orders left pending (older than `orders.recovery_age_seconds`)
        by a crash; returns how many were settled. Each is leased first (so concurrent workers
        take different ones), and authorization is re-driven with the order's provider key, so
        a payment authorized before the crash is not taken twice. One order failing does not
        stop the others."""
        now = self._clock.now()
        before = now - self._recovery_age
        async with self._uow(read_only=True, strong=True) as uow:
            stuck = await uow.orders.stuck(before, limit)
        settled = 0
        for tenant_id, order_id in stuck:
            try:
                async with self._uow(tenant_id) as uow:
                    order = await uow.orders.get(order_id)
                    leased = order is not None and await uow.orders.lease(order_id, before, now)
                    await uow.commit()
                if not leased or order is None:
                    continue
                with contextlib.suppress(PaymentUnavailable):  # compensated, key released
                    await self._settle(order)
            except Exception as error:
                log.warning("orders.recovery_failed", order=str(order_id), error=repr(error))
                continue
            log.info("orders.recovered", order=str(order_id))
            self._observer.order_outcome("recovered")
            settled += 1
        return settled

    async def purge_expired_keys(self) -> int:
        """Idempotency keys are kept 24 h; the worker deletes older completed ones."""
        async with self._uow() as uow:
            gone = await uow.idempotency.purge(self._clock.now())
            await uow.commit()
        return gone

    async def get(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> OrderRecord:
        order = await read(self._uow, tenant_id, lambda uow: uow.orders.get(order_id))
        if order is None:
            raise OrderNotFound()
        return order

    async def list(
        self, tenant_id: uuid.UUID, limit: int, cursor: str | None
    ) -> Slice[OrderRecord]:
        after = decode_keyset(cursor)
        rows = await read(self._uow, tenant_id, lambda uow: uow.orders.page(limit, after))
        return keyset_page(rows, limit)

    async def cancel(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> OrderRecord:
        """Void the authorization and restock, once: cancelling a cancelled order returns it
        unchanged. The provider is called inside the transaction that holds the order's row
        lock, so two cancels cannot both restock; a provider failure changes nothing."""
        now = self._clock.now()
        async with self._uow(tenant_id) as uow:
            order = await uow.orders.get(order_id, lock=True)
            if order is None:
                raise OrderNotFound()
            if order.status == "cancelled":
                return order
            if order.status != "confirmed":
                raise OrderNotCancellable(f"an order that is {order.status} cannot be cancelled")
            if order.authorization_id:
                await self._gateway.void(
                    ProviderAccount.of_tenant(tenant_id),
                    f"{order.payment_key}:void",
                    order.authorization_id,
                )
            await _restock(uow, order_id, order.lines, now)
            cancelled = await uow.orders.transition(order_id, "confirmed", "cancelled", now)
            assert cancelled is not None  # the row is locked above
            await uow.outbox.add("order.cancelled", _sale(order), now)
            await uow.commit()
        self._observer.order_outcome("cancelled")
        return replace(cancelled, lines=order.lines)


async def _restock(
    uow: UnitOfWork, order_id: uuid.UUID, lines: tuple[OrderLineRecord, ...], at: datetime
) -> None:
    """Give an order's units back, up to the stock cap (MAX_STOCK): units that would lift the
    stock above it (it was adjusted up meanwhile) are dropped and logged, never an error."""
    for line in lines:
        dropped = await uow.products.restock(line.product_id, line.quantity, at)
        if dropped:
            log.warning(
                "orders.restock_capped",
                order=str(order_id),
                product=str(line.product_id),
                units=line.quantity,
                dropped=dropped,
            )


def _sale(order: OrderRecord) -> dict[str, Any]:
    """What the sales read model needs of an order event: the `order.paid` / `order.cancelled`
    payload, v2 (app/events/types.py; schema in app/events/schemas/)."""
    return {
        "order_id": str(order.id),
        "at": order.created_at.isoformat(),
        "lines": [
            {
                "product_id": str(x.product_id),
                "quantity": x.quantity,
                "unit_price": {"amount": x.unit_amount, "currency": order.currency},
            }
            for x in order.lines
        ],
    }
