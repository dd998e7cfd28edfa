"""Report errors: the API's (stable codes) and the read model's permanent event failures."""

from __future__ import annotations

from app.core.errors import Unprocessable
from app.events.errors import PermanentEventFailure

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1  # sales_daily.units and .revenue


class InvalidPeriod(Unprocessable):
    code = "report.invalid_period"
    title = "Invalid period"


class SalesTotalOverflow(PermanentEventFailure):
    """Applying the event would take a sales_daily total out of the bigint range: retrying cannot
    help, so the event is dead-lettered (instead of a PostgreSQL 22003 on every attempt)."""


class MalformedSaleEvent(PermanentEventFailure):
    """The event lacks what the read model needs (or holds nonsense): retrying cannot help."""
