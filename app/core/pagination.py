"""Opaque keyset cursors: base64url of a small JSON array; tampering gives a 400."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from app.core.errors import InvalidRequest


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
