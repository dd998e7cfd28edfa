"""Order domain errors (stable codes are part of the API contract) and the numeric bounds of an
order (docs/decisions.md, "Issue 8: payment breakers and numeric bounds", has the arithmetic)."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, Unprocessable

# Units of one product in one order, however many items name it (`order_lines.quantity` is int4;
# an item alone is already limited to this at the edge).
MAX_UNITS_PER_PRODUCT = 1_000
# An order's total in minor units (1,000,000,000.00 in a two-decimal currency). It bounds every
# amount derived from the order: `orders.total_amount`, each line's amount, and what one order
# adds to a `sales_daily` row (bigint: overflowing it takes ~9.2e7 such orders of one product, of
# one tenant, on one day).
MAX_ORDER_TOTAL = 10**11


class IdempotencyMismatch(Unprocessable):
    code = "idempotency.mismatch"
    title = "Idempotency key reused with another request"


class IdempotencyInFlight(Conflict):
    code = "idempotency.in_flight"
    title = "Request with this idempotency key in progress"


class InsufficientStock(Conflict):
    code = "inventory.insufficient"
    title = "Insufficient stock"


class UnknownProduct(Unprocessable):
    code = "order.unknown_product"
    title = "Unknown product"


class MixedCurrencies(Unprocessable):
    code = "order.mixed_currencies"
    title = "Products priced in different currencies"


class QuantityLimitExceeded(Unprocessable):
    code = "order.quantity_limit"
    title = "Too many units of one product"


class TotalLimitExceeded(Unprocessable):
    code = "order.total_limit"
    title = "Order total too large"


class OrderNotFound(NotFound):
    code = "order.not_found"
    title = "Order not found"


class OrderNotCancellable(Conflict):
    code = "order.not_cancellable"
    title = "Order cannot be cancelled"
