"""The sales_daily read model."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

from app.db.repository import TenantScoped
from app.reports.errors import BIGINT_MAX, BIGINT_MIN, SalesTotalOverflow


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
        """Add to the day's totals, checked: raises SalesTotalOverflow (and changes nothing) when
        a sum would leave the bigint range. The sums are compared in numeric, so the check itself
        cannot overflow; the conflict branch's WHERE leaves the row alone and returns nothing."""
        for value in (units, revenue):
            if not BIGINT_MIN <= value <= BIGINT_MAX:
                raise SalesTotalOverflow(f"{value} does not fit sales_daily (bigint)")
        applied = await self._conn.fetchval(
            "INSERT INTO sales_daily (tenant_id, day, product_id, currency, units, revenue)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tenant_id, day, product_id, currency)"
            " DO UPDATE SET units = sales_daily.units + EXCLUDED.units,"
            " revenue = sales_daily.revenue + EXCLUDED.revenue"
            " WHERE sales_daily.units::numeric + EXCLUDED.units BETWEEN $7 AND $8"
            " AND sales_daily.revenue::numeric + EXCLUDED.revenue BETWEEN $7 AND $8"
            " RETURNING true",
            self._tenant_id,
            day,
            product_id,
            currency,
            units,
            revenue,
            BIGINT_MIN,
            BIGINT_MAX,
        )
        if not applied:
            raise SalesTotalOverflow(
                f"adding {units} units / {revenue} to {day} {product_id} {currency} would"
                " overflow sales_daily (bigint)"
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
