"""Opaque keyset cursors: base64url of a small JSON array; tampering gives a 400."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from app.core.errors import InvalidRequest

T = TypeVar("T")


class InvalidCursor(InvalidRequest):
    code = "pagination.invalid_cursor"
    title = "Invalid cursor"


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(values, separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidCursor("cursor is not valid") from error
    if not isinstance(values, list) or len(values) != arity:
        raise InvalidCursor("cursor is not valid")
    return values


def decode_keyset(cursor: str | None) -> tuple[datetime, uuid.UUID] | None:
    """The (created_at, id) position a list page continues after; None for the first page."""
    if not cursor:
        return None
    created_at, last_id = decode_cursor(cursor, 2)
    try:
        moment = datetime.fromisoformat(created_at)
        if moment.tzinfo is None:
            raise ValueError("naive timestamp")
        return moment.astimezone(UTC), uuid.UUID(last_id)
    except (TypeError, ValueError, OverflowError) as error:
        raise InvalidCursor("cursor is not valid") from error


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """One page of a list, as use cases return it."""

    items: list[T]
    next_cursor: str | None


def keyset_page(rows: list[T], limit: int) -> Slice[T]:
    """Split `limit + 1` fetched rows (ordered by created_at, id) into a page and its cursor."""
    items, more = rows[:limit], len(rows) > limit
    last: Any = items[-1] if more else None
    return Slice(items, encode_cursor(last.created_at.isoformat(), last.id) if last else None)
