"""Catalog DTOs at the HTTP edge; built from the service's records, never from ORM objects."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.json_schema import SkipJsonSchema

from app.catalog.errors import MAX_STOCK
from app.catalog.repository import ProductRecord
from app.catalog.service import StockAdjustmentResult
from app.http.schemas import MoneyIn, MoneyOut, Strict, Text

Sku = Annotated[
    str,
    Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", max_length=64, examples=["TSHIRT-M"]),
]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
Description = Annotated[Text, Field(max_length=5000)]


class ProductCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sku": "TSHIRT-M",
                    "name": "T-shirt, medium",
                    "description": "Organic cotton.",
                    "price": {"amount": 1999, "currency": "EUR"},
                    "stock": 25,
                }
            ]
        },
    )
    sku: Sku
    name: Name
    description: Description | None = None
    price: MoneyIn
    stock: Annotated[int, Field(ge=0, le=MAX_STOCK)] = 0


class ProductUpdate(Strict):
    """Partial update; `description: null` clears it. At least one field."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "minProperties": 1,
            "examples": [{"price": {"amount": 1799, "currency": "EUR"}}],
        },
    )

    # None in Python means "not sent"; only `description` may be sent as null.
    sku: Sku | SkipJsonSchema[None] = None
    name: Name | SkipJsonSchema[None] = None
    description: Description | None = None
    price: MoneyIn | SkipJsonSchema[None] = None

    @model_validator(mode="after")
    def _not_empty(self) -> ProductUpdate:
        if not self.model_fields_set:
            raise ValueError("send at least one field to change")
        for field in ("sku", "name", "price"):
            if field in self.model_fields_set and getattr(self, field) is None:
                raise ValueError(f"{field} cannot be null")
        return self


class ProductRead(BaseModel):
    id: uuid.UUID
    sku: str
    name: str
    description: str | None
    price: MoneyOut
    stock: int
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, record: ProductRecord) -> ProductRead:
        return cls(
            id=record.id,
            sku=record.sku,
            name=record.name,
            description=record.description,
            price=MoneyOut(amount=record.price.amount, currency=record.price.currency),
            stock=record.stock,
            version=record.version,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )


class StockAdjustmentCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"delta": 10, "reason": "restock from supplier"}]},
    )

    delta: Annotated[
        int,
        Field(
            ge=-MAX_STOCK,
            le=MAX_STOCK,
            description="Units added (positive) or removed (negative); never zero.",
            json_schema_extra={"not": {"const": 0}},
        ),
    ]
    reason: Annotated[Text, Field(min_length=1, max_length=200)]

    @model_validator(mode="after")
    def _non_zero(self) -> StockAdjustmentCreate:
        if self.delta == 0:
            raise ValueError("delta must not be zero")
        return self


class StockAdjustmentRead(BaseModel):
    id: uuid.UUID
    product_id: uuid.UUID
    delta: int
    reason: str
    stock: int

    @classmethod
    def of(cls, result: StockAdjustmentResult) -> StockAdjustmentRead:
        return cls(
            id=result.id,
            product_id=result.product.id,
            delta=result.delta,
            reason=result.reason,
            stock=result.product.stock,
        )
