"""The sales read model: a consumer of order events, and the report that reads it."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from app.db.uow import UnitOfWork, UnitOfWorkFactory, read
from app.events.repository import Event
from app.events.types import upcast
from app.reports.errors import InvalidPeriod, MalformedSaleEvent
from app.reports.repository import SalesRow

CONSUMER = "sales_daily"  # its inbox name, and the projection's name for `events replay`
SIGN = {"order.paid": 1, "order.cancelled": -1}  # the sales events; the rest are ignored
MAX_DAYS = 366


class SalesProjector:
    """`order.paid` adds an order's lines to its day, `order.cancelled` takes them back. The
    inbox row and the effect commit together: a redelivered event changes nothing. Events are
    upcast to their current version first (app/events/types.py), so a v1 row still in the
    outbox or a v1 message from the broker projects as a v2 one does.

    Also a projection that `storefront events replay` rebuilds (app/events/replay.py): `apply`
    writes to the live table or to a replay run's rebuild, `swap` puts a rebuild in place."""

    name = CONSUMER
    topics = tuple(SIGN)

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def handle(self, event: Event) -> None:
        if event.topic not in SIGN:
            return
        async with self._uow(event.tenant_id) as uow:
            await uow.inbox.hold(CONSUMER)  # waits while a replay swaps this tenant's table
            if not await uow.inbox.first_time(CONSUMER, event.id):
                return
            await self.apply(uow, event)
            await uow.commit()

    async def apply(self, uow: UnitOfWork, event: Event, run: uuid.UUID | None = None) -> None:
        sign = SIGN[event.topic]
        day, lines = _sale_lines(event)
        for product_id, quantity, amount, currency in lines:
            units = sign * quantity
            await uow.sales.add(day, product_id, currency, units, units * amount, run)

    async def swap(self, uow: UnitOfWork, run: uuid.UUID) -> tuple[str, str]:
        """Replace the tenant's live rows by run's rebuild; (live, rebuilt) checksums before."""
        checksums = await uow.sales.checksums(run)
        await uow.sales.swap_in(run)
        return checksums

    async def discard(self, uow: UnitOfWork, run: uuid.UUID) -> None:
        await uow.sales.discard(run)


def _sale_lines(event: Event) -> tuple[date, list[tuple[uuid.UUID, int, int, str]]]:
    """The sale in an order event (upcast to v2: a price per line), or MalformedSaleEvent (a
    permanent failure)."""
    try:
        payload = upcast(event).payload
        day = datetime.fromisoformat(payload["at"]).date()
        lines = [
            (
                uuid.UUID(line["product_id"]),
                int(line["quantity"]),
                int(line["unit_price"]["amount"]),
                str(line["unit_price"]["currency"]),
            )
            for line in payload["lines"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedSaleEvent(f"not a sale event payload: {error!r}") from error
    return day, lines


class ReportService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def sales(self, tenant_id: uuid.UUID, first: date, last: date) -> list[SalesRow]:
        if last < first or (last - first).days >= MAX_DAYS:
            raise InvalidPeriod(f"`from` must not be after `to`, and at most {MAX_DAYS} days")
        return await read(self._uow, tenant_id, lambda uow: uow.sales.between(first, last))
