"""Catalog domain errors (stable codes are part of the API contract)."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, PreconditionFailed

MAX_STOCK = 1_000_000_000  # units of one product; the column is int4


class ProductNotFound(NotFound):
    code = "catalog.not_found"
    title = "Product not found"


class SkuTaken(Conflict):
    code = "catalog.sku_taken"
    title = "SKU already exists"


class InsufficientStock(Conflict):
    code = "inventory.insufficient"
    title = "Insufficient stock"


class VersionMismatch(PreconditionFailed):
    code = "catalog.version_mismatch"
    title = "Product was changed by someone else"


class StockLimitExceeded(Conflict):
    code = "inventory.limit_exceeded"
    title = "Stock limit exceeded"
