from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class ApiKey(Base):
    """Machine credentials. Only a SHA-256 of the secret is stored (secrets are 256-bit random,
    so a slow hash buys nothing and would cost every request)."""

    __tablename__ = "api_keys"
    __table_args__ = (Index("ix_api_keys_tenant_id", "tenant_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(20))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rotated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class User(Base):
    """A person of a tenant. Emails are unique within a tenant (an address may have accounts in
    several tenants; login then names the tenant) and stored lower-cased, so comparison is
    case-insensitive."""

    __tablename__ = "users"
    __table_args__ = (
        Index("ix_users_tenant_created", "tenant_id", "created_at", "id"),
        UniqueConstraint("tenant_id", "email"),
        CheckConstraint("role IN ('owner', 'admin', 'member', 'viewer')", name="role_known"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    email: Mapped[str] = mapped_column(String(254), index=True)
    password_hash: Mapped[str] = mapped_column(Text)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RefreshToken(Base):
    """One opaque, single-use refresh token; a login starts a family, each refresh adds one."""

    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "tenant_id", "family_id"),)

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    family_id: Mapped[uuid.UUID]
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Revocation(Base):
    """An ended session (refresh-token family), deleted user or revoked API key, by id, kept until
    every access token or cached credential that could name it has expired. Read across tenants
    by every API process (ids only), so it has no tenant_id and no row-level security."""

    __tablename__ = "revocations"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class WsTicket(Base):
    """A single-use WebSocket ticket (`POST /v1/ws-tickets`): a SHA-256 of the secret, bound to
    the tenant and the principal that asked for it; redeeming deletes the row."""

    __tablename__ = "ws_tickets"
    __table_args__ = (Index("ix_ws_tickets_tenant_id", "tenant_id", "expires_at"),)

    token_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    principal_kind: Mapped[str] = mapped_column(String(10))
    principal_id: Mapped[uuid.UUID]
    role: Mapped[str | None] = mapped_column(String(20))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default="{}")
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
