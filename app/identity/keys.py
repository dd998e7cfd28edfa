"""API-key secrets: `sf_live_` + 32 random bytes (base64url) + a 6-character CRC32 checksum.

The prefix makes leaked keys recognisable to secret scanners; the checksum lets a mistyped or
truncated key be refused without a database lookup. Only a SHA-256 of the whole secret is
stored: it is 256-bit random, so a slow hash would buy nothing and cost every request.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

SECRET_PREFIX = "sf_live_"
DISPLAY_LENGTH = 16  # what lists show: the prefix and the first random characters
_RANDOM_LENGTH = 43  # base64url of 32 bytes, unpadded
_CHECKSUM_LENGTH = 6
_BASE62 = string.digits + string.ascii_letters
SECRET_LENGTH = len(SECRET_PREFIX) + _RANDOM_LENGTH + _CHECKSUM_LENGTH


def _checksum(body: str) -> str:
    value = zlib.crc32(body.encode())
    digits = []
    for _ in range(_CHECKSUM_LENGTH):
        value, digit = divmod(value, 62)
        digits.append(_BASE62[digit])
    return "".join(reversed(digits))


def new_secret() -> str:
    body = secrets.token_urlsafe(32)
    return SECRET_PREFIX + body + _checksum(body)


def well_formed(secret: str) -> bool:
    if len(secret) != SECRET_LENGTH or not secret.isascii() or not secret.startswith(SECRET_PREFIX):
        return False
    body, checksum = secret[len(SECRET_PREFIX) : -_CHECKSUM_LENGTH], secret[-_CHECKSUM_LENGTH:]
    return secrets.compare_digest(_checksum(body), checksum)


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()
