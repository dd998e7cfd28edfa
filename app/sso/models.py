"""SSO tables (ORM: metadata only; the SQL is in repository.py). Tenant data, all three under
forced row-level security (migration 0014)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class SsoConfig(Base):
    """A tenant's identity provider. The client secret is a tenant secret (`tenant_secrets`)."""

    __tablename__ = "sso_configs"
    __table_args__ = (
        CheckConstraint("default_role IN ('admin', 'member', 'viewer')", name="default_role_known"),
    )

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    issuer: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    allowed_domains: Mapped[list[str]] = mapped_column(ARRAY(Text))
    default_role: Mapped[str] = mapped_column(String(20))
    jit_provisioning: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    password_login_disabled: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SsoIdentity(Base):
    """An external subject (issuer, sub) linked to a user: at most one per user."""

    __tablename__ = "sso_identities"
    __table_args__ = (UniqueConstraint("tenant_id", "user_id"),)

    tenant_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    issuer: Mapped[str] = mapped_column(String(500), primary_key=True)
    subject: Mapped[str] = mapped_column(String(255), primary_key=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SsoLogin(Base):
    """A login in flight between /start and /callback; deleted when used."""

    __tablename__ = "sso_logins"
    __table_args__ = (Index("ix_sso_logins_tenant_expires", "tenant_id", "expires_at"),)

    state_hash: Mapped[bytes] = mapped_column(LargeBinary, primary_key=True)
    tenant_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"))
    binding_hash: Mapped[bytes] = mapped_column(LargeBinary)
    nonce: Mapped[str] = mapped_column(Text)
    code_verifier: Mapped[str] = mapped_column(Text)
    issuer: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
