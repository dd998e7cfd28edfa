"""The sales read model: a consumer of order events, and the report that reads it."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from app.db.uow import UnitOfWorkFactory, read
from app.events.repository import Event
from app.reports.errors import InvalidPeriod, MalformedSaleEvent
from app.reports.repository import SalesRow

CONSUMER = "sales_daily"
SIGN = {"order.paid": 1, "order.cancelled": -1}  # the sales events; the rest are ignored
MAX_DAYS = 366


class SalesProjector:
    """`order.paid` adds an order's lines to its day, `order.cancelled` takes them back. The
    inbox row and the effect commit together: a redelivered event changes nothing."""

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def handle(self, event: Event) -> None:
        sign = SIGN.get(event.topic)
        if sign is None:
            return
        async with self._uow(event.tenant_id) as uow:
            if not await uow.inbox.first_time(CONSUMER, event.id):
                return
            day, currency, lines = _sale_lines(event.payload)
            for product_id, quantity, unit_amount in lines:
                units = sign * quantity
                await uow.sales.add(day, product_id, currency, units, units * unit_amount)
            await uow.commit()


def _sale_lines(payload: dict[str, Any]) -> tuple[date, str, list[tuple[uuid.UUID, int, int]]]:
    """The sale in an order event, or MalformedSaleEvent (a permanent failure)."""
    try:
        day = datetime.fromisoformat(payload["at"]).date()
        currency = str(payload["currency"])
        lines = [
            (uuid.UUID(line["product_id"]), int(line["quantity"]), int(line["unit_amount"]))
            for line in payload["lines"]
        ]
    except (KeyError, TypeError, ValueError) as error:
        raise MalformedSaleEvent(f"not a sale event payload: {error!r}") from error
    return day, currency, lines


class ReportService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def sales(self, tenant_id: uuid.UUID, first: date, last: date) -> list[SalesRow]:
        if last < first or (last - first).days >= MAX_DAYS:
            raise InvalidPeriod(f"`from` must not be after `to`, and at most {MAX_DAYS} days")
        return await read(self._uow, tenant_id, lambda uow: uow.sales.between(first, last))
