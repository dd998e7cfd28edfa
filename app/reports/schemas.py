"""Report DTOs."""

from __future__ import annotations

import uuid
from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from app.http.schemas import MoneyOut
from app.reports.repository import SalesRow


class SalesLine(BaseModel):
    day: date
    product_id: uuid.UUID
    units: int
    revenue: MoneyOut


class SalesReport(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    items: list[SalesLine]

    @classmethod
    def of(cls, first: date, last: date, rows: list[SalesRow]) -> SalesReport:
        return cls(
            from_=first,
            to=last,
            items=[
                SalesLine(
                    day=row.day,
                    product_id=row.product_id,
                    units=row.units,
                    revenue=MoneyOut(amount=row.revenue, currency=row.currency),
                )
                for row in rows
            ],
        )
