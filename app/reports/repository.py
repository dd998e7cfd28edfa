"""The sales_daily read model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class SalesRow:
    day: date
    product_id: uuid.UUID
    currency: str
    units: int
    revenue: int


class SalesRepository(TenantScoped):
    async def add(
        self, day: date, product_id: uuid.UUID, currency: str, units: int, revenue: int
    ) -> None:
        await self._conn.execute(
            "INSERT INTO sales_daily (tenant_id, day, product_id, currency, units, revenue)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, day, product_id, currency)"
            " DO UPDATE SET units = sales_daily.units + EXCLUDED.units,"
            " revenue = sales_daily.revenue + EXCLUDED.revenue",
            self._tenant_id,
            day,
            product_id,
            currency,
            units,
            revenue,
        )

    async def between(self, first: date, last: date) -> list[SalesRow]:
        rows = await self._conn.fetch(
            "SELECT day, product_id, currency, units, revenue FROM sales_daily"
            " WHERE tenant_id = $1 AND day BETWEEN $2 AND $3 ORDER BY day, product_id, currency",
            self._tenant_id,
            first,
            last,
        )
        return [SalesRow(*row) for row in rows]
