"""GET /v1/reports/sales: daily sales per product, from the read model (replica read)."""

from datetime import date
from typing import Annotated

from fastapi import APIRouter, Query

from app.http.di import Provide, inject
from app.http.schemas import problem_responses
from app.http.security import ReportsReader
from app.reports.schemas import SalesReport
from app.reports.service import MAX_DAYS, ReportService

router = APIRouter(prefix="/v1/reports", tags=["reports"])


@router.get(
    "/sales", response_model=SalesReport, responses=problem_responses(400, 401, 403, 422, 429, 503)
)
@inject
async def get_sales_report(
    principal: ReportsReader,
    first: Annotated[date, Query(alias="from", description="First day (UTC), inclusive.")],
    last: Annotated[
        date,
        Query(
            alias="to",
            description=f"Last day (UTC), inclusive: not before `from`, and at most {MAX_DAYS}"
            " days in all (422 `report.invalid_period`).",
        ),
    ],
    service: ReportService = Provide["report_service"],
) -> SalesReport:
    """Units and revenue of confirmed orders minus cancellations, per day and product. Fed by
    events, so it trails the orders by the relay's delay."""
    rows = await service.sales(principal.tenant_id, first, last)
    return SalesReport.of(first, last, rows)
