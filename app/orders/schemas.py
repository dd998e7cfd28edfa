"""Order DTOs at the HTTP edge; the service stores `OrderRead` snapshots for idempotent replays."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.http.schemas import MoneyOut, Strict
from app.orders.repository import OrderRecord

MAX_LINES = 50


class OrderItemIn(Strict):
    product_id: uuid.UUID
    quantity: Annotated[int, Field(ge=1, le=1000)]


class PaymentIn(Strict):
    token: Annotated[
        str,
        Field(
            min_length=1,
            max_length=200,
            pattern=r"^[A-Za-z0-9_\-]+$",
            description="Payment method token from the provider (sandbox: tok_ok, tok_declined,"
            " tok_timeout, tok_error).",
        ),
    ]


class OrderCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {"product_id": "0b9d1c3e-6f7a-4e53-9a51-2f8c0c1d9e10", "quantity": 2}
                    ],
                    "payment": {"token": "tok_ok"},
                }
            ]
        },
    )
    items: Annotated[list[OrderItemIn], Field(min_length=1, max_length=MAX_LINES)]
    payment: PaymentIn


class OrderLineRead(BaseModel):
    product_id: uuid.UUID
    quantity: int
    unit_price: MoneyOut
    line_total: MoneyOut


class OrderRead(BaseModel):
    """The newest version's order (older versions: app/versions/changes)."""

    id: uuid.UUID
    status: Literal["pending", "confirmed", "payment_failed", "failed", "cancelled"]
    total: MoneyOut
    lines: list[OrderLineRead]
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, order: OrderRecord) -> OrderRead:
        return cls(
            id=order.id,
            status=order.status,
            total=MoneyOut(amount=order.total_amount, currency=order.currency),
            lines=[
                OrderLineRead(
                    product_id=line.product_id,
                    quantity=line.quantity,
                    unit_price=MoneyOut(amount=line.unit_amount, currency=order.currency),
                    line_total=MoneyOut(amount=line.line_amount, currency=order.currency),
                )
                for line in order.lines
            ],
            created_at=order.created_at,
            updated_at=order.updated_at,
        )
