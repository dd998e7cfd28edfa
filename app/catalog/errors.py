"""Catalog domain errors (stable codes are part of the API contract)."""

from __future__ import annotations

from app.core.errors import Conflict, NotFound, PreconditionFailed


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
