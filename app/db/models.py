"""Infrastructure tables of the database layer itself (ORM: metadata only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, String, Text, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base


class BackfillProgress(Base):
    """Where each named backfill (app/db/backfills.py) got to: the key after which its next
    batch starts, and when it found nothing left to fill."""

    __tablename__ = "backfill_progress"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    last_key: Mapped[list[str] | None] = mapped_column(ARRAY(Text))
    rows_updated: Mapped[int] = mapped_column(BigInteger, server_default="0")
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    done_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
