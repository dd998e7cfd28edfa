from __future__ import annotations

import uuid
from datetime import date, datetime

from sqlalchemy import BigInteger, Date, DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class ApiVersionUsage(Base):
    """Requests per (tenant, API version, day), summed over every API process."""

    __tablename__ = "api_version_usage"

    tenant_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)  # no FK: the migration says why
    version: Mapped[str] = mapped_column(String(10), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger)
    last_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
