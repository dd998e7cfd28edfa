"""Orders, their lines, idempotency keys and the transactional outbox (ORM: metadata only)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class Order(Base):
    """`status` is also the saga's persisted step: `pending` = stock reserved, payment not
    settled; the others are final (`failed`: compensated after a provider outage)."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_tenant_created", "tenant_id", "created_at", "id"),
        Index("ix_orders_pending", "updated_at", postgresql_where=text("status = 'pending'")),
        CheckConstraint(
            "status IN ('pending', 'confirmed', 'payment_failed', 'failed', 'cancelled')",
            name="status_known",
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))
    total_amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    payment_token: Mapped[str] = mapped_column(String(200))
    # The provider-side idempotency key: (tenant, Idempotency-Key), so a client's retry after a
    # provider outage reuses an authorization that completed after our timeout.
    payment_key: Mapped[str] = mapped_column(String(300))
    authorization_id: Mapped[str | None] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), primary_key=True
    )
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    # quantity x unit_amount, stored since migration 0010 (expand) and NOT NULL since 0011
    # (contract, after the backfill `order_line_amounts`).
    line_amount: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKey(Base):
    """One row per (tenant, key): in flight until the request's outcome is stored with it."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        CheckConstraint("status IN ('in_flight', 'completed')", name="status_known"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
        Index(
            "ix_idempotency_keys_order",
            "tenant_id",
            "order_id",
            unique=True,
            postgresql_where=text("order_id IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20))
    order_id: Mapped[uuid.UUID | None]
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OutboxEvent(Base):
    """Events written in the transaction of the change they describe; the relay publishes them."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_unpublished", "seq", postgresql_where=text("published_at IS NULL")),
        Index("ix_outbox_tenant", "tenant_id", "seq"),  # a tenant's log, for replays
    )

    seq: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    id: Mapped[uuid.UUID] = mapped_column(unique=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    topic: Mapped[str] = mapped_column(String(100))
    version: Mapped[int] = mapped_column(BigInteger, server_default="1")  # of the payload
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    dead_lettered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(Text)


class OrderEvent(Base):
    """Every status an order takes, numbered per order from 1 (`seq`), written by a trigger on
    `orders` in the transaction of the change (migration 0015), which also NOTIFYs
    `storefront_order_events`; read by the live status WebSockets (app/orders/live.py)."""

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_tenant_id", "tenant_id", "position"),)

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    tenant_id: Mapped[uuid.UUID]
    position: Mapped[int] = mapped_column(BigInteger, Identity(always=False))
    status: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
