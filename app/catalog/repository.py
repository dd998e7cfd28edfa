"""Products: every query filters by tenant (RLS enforces it as well)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from app.catalog.errors import MAX_STOCK, SkuTaken
from app.core.money import Money
from app.db.repository import TenantScoped


@dataclass(frozen=True, slots=True)
class ProductRecord:
    id: uuid.UUID
    sku: str
    name: str
    description: str | None
    price: Money
    stock: int
    version: int
    created_at: datetime
    updated_at: datetime


_COLUMNS = (
    "id, sku, name, description, price_amount, price_currency, stock, version,"
    " created_at, updated_at"
)


_UPDATABLE = frozenset({"sku", "name", "description", "price_amount", "price_currency"})


def _record(row: Any) -> ProductRecord:
    return ProductRecord(
        id=row[0],
        sku=row[1],
        name=row[2],
        description=row[3],
        price=Money(row[4], row[5]),
        stock=row[6],
        version=row[7],
        created_at=row[8],
        updated_at=row[9],
    )


def _like(text: str, prefix: bool = False) -> str:
    """An ILIKE pattern: `text` anywhere, or at the start only (`prefix`)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"{escaped}%" if prefix else f"%{escaped}%"


class ProductRepository(TenantScoped):
    async def add(
        self,
        product_id: uuid.UUID,
        sku: str,
        name: str,
        description: str | None,
        price: Money,
        stock: int,
        at: datetime,
    ) -> ProductRecord | None:
        """Insert; None when the SKU is taken in this tenant."""
        row = await self._conn.fetchrow(
            "INSERT INTO products (id, tenant_id, sku, name, description, price_amount,"
            " price_currency, stock, created_at, updated_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)"
            f" ON CONFLICT (tenant_id, sku) DO NOTHING RETURNING {_COLUMNS}",
            product_id,
            self._tenant_id,
            sku,
            name,
            description,
            price.amount,
            price.currency,
            stock,
            at,
        )
        return _record(row) if row else None

    async def get(self, product_id: uuid.UUID) -> ProductRecord | None:
        row = await self._conn.fetchrow(
            f"SELECT {_COLUMNS} FROM products WHERE tenant_id = $1 AND id = $2",
            self._tenant_id,
            product_id,
        )
        return _record(row) if row else None

    async def restock(self, product_id: uuid.UUID, quantity: int, at: datetime) -> int:
        """Give reserved units back, up to MAX_STOCK (the stock may have been adjusted up to the
        cap since they were reserved); returns the units that did not fit (0 normally). The
        row is locked first, so `old.stock` is the value the update starts from; the sum is
        taken in bigint."""
        dropped = await self._conn.fetchval(
            "WITH old AS (SELECT id, stock FROM products WHERE tenant_id = $1 AND id = $2"
            " FOR UPDATE)"
            f" UPDATE products p SET stock = LEAST(old.stock::bigint + $3, {MAX_STOCK}),"
            " version = p.version + 1, updated_at = $4"
            " FROM old WHERE p.tenant_id = $1 AND p.id = old.id"
            " RETURNING old.stock::bigint + $3 - p.stock",
            self._tenant_id,
            product_id,
            quantity,
            at,
        )
        return int(dropped or 0)

    async def prices(self, product_ids: list[uuid.UUID]) -> dict[uuid.UUID, Money]:
        rows = await self._conn.fetch(
            "SELECT id, price_amount, price_currency FROM products"
            " WHERE tenant_id = $1 AND id = ANY($2::uuid[])",
            self._tenant_id,
            product_ids,
        )
        return {row[0]: Money(row[1], row[2]) for row in rows}

    async def page(
        self,
        limit: int,
        after: tuple[datetime, uuid.UUID] | None,
        query: str | None,
        *,
        prefix: bool = False,
    ) -> list[ProductRecord]:
        """`query` matches name or SKU: as a substring, or as a prefix (`prefix`)."""
        rows = await self._page(
            _COLUMNS,
            "products",
            limit,
            after,
            " AND ($5::text IS NULL OR name ILIKE $5 OR sku ILIKE $5)",
            _like(query, prefix) if query else None,
        )
        return [_record(row) for row in rows]

    async def update(
        self, product_id: uuid.UUID, expected_version: int, changes: dict[str, Any], at: datetime
    ) -> ProductRecord | None:
        """Compare-and-set on `version`; None when the row is gone or the version moved."""
        assert set(changes) <= _UPDATABLE, "column names are interpolated: allow-list only"
        columns = {"updated_at": at, **changes}
        assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(columns, start=4))
        try:
            row = await self._conn.fetchrow(
                f"UPDATE products SET {assignments}, version = version + 1"
                f" WHERE tenant_id = $1 AND id = $2 AND version = $3 RETURNING {_COLUMNS}",
                self._tenant_id,
                product_id,
                expected_version,
                *columns.values(),
            )
        except asyncpg.UniqueViolationError as error:
            raise SkuTaken(f"SKU '{changes.get('sku')}' already exists") from error
        return _record(row) if row else None

    async def adjust_stock(
        self, product_id: uuid.UUID, delta: int, at: datetime
    ) -> ProductRecord | None:
        """Atomic: one UPDATE whose WHERE keeps stock within 0..MAX_STOCK (no read-modify-write
        race; the sum is taken in bigint so it cannot overflow the int4 column)."""
        row = await self._conn.fetchrow(
            "UPDATE products SET stock = stock + $3, version = version + 1, updated_at = $4"
            " WHERE tenant_id = $1 AND id = $2"
            f" AND stock::bigint + $3 BETWEEN 0 AND {MAX_STOCK} RETURNING {_COLUMNS}",
            self._tenant_id,
            product_id,
            delta,
            at,
        )
        return _record(row) if row else None

    async def record_adjustment(
        self, adjustment_id: uuid.UUID, product_id: uuid.UUID, delta: int, reason: str, at: datetime
    ) -> None:
        await self._conn.execute(
            "INSERT INTO stock_adjustments (id, tenant_id, product_id, delta, reason, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6)",
            adjustment_id,
            self._tenant_id,
            product_id,
            delta,
            reason,
            at,
        )
