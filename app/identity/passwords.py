"""Password hashing (argon2id through libpass's CryptContext) and the password policy.

Hashing is CPU-bound for tens of milliseconds by design, so it runs in a worker thread
(argon2-cffi releases the GIL) and never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import secrets
from functools import cache
from pathlib import Path

from passlib.context import CryptContext
from passlib.exc import UnknownHashError

from app.core.errors import Unprocessable
from app.settings import PasswordSettings

MIN_LENGTH = 12
MAX_LENGTH = 128
_COMMON = Path(__file__).with_name("common_passwords.txt")


class WeakPassword(Unprocessable):
    code = "user.weak_password"
    title = "Password rejected"


def check_password_policy(password: str) -> None:
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise WeakPassword(f"passwords have {MIN_LENGTH} to {MAX_LENGTH} characters")
    if password.casefold() in _common_passwords():
        raise WeakPassword("this password is on the list of common passwords")


@cache
def _common_passwords() -> frozenset[str]:
    lines = _COMMON.read_text().splitlines()
    return frozenset(line.strip().casefold() for line in lines if line.strip())


class PasswordHasher:
    """argon2id for new hashes; bcrypt hashes (legacy imports) still verify and are upgraded."""

    def __init__(self, settings: PasswordSettings) -> None:
        self._context = CryptContext(
            schemes=["argon2", "bcrypt"],
            deprecated=["bcrypt"],
            argon2__type="ID",
            argon2__memory_cost=settings.argon2_memory_kib,
            argon2__rounds=settings.argon2_time_cost,
            argon2__parallelism=settings.argon2_parallelism,
        )
        # What unknown users are checked against: the same work as a wrong password.
        self._dummy_hash = str(self._context.hash(secrets.token_urlsafe(16)))

    async def hash(self, password: str) -> str:
        return str(await asyncio.to_thread(self._context.hash, password))

    async def verify(self, password: str, hashed: str | None) -> tuple[bool, str | None]:
        """(matches, new hash when the stored one should be upgraded). `hashed=None` (no such
        user) verifies against a dummy hash and never matches."""
        if hashed is None:
            await asyncio.to_thread(self._verify, password, self._dummy_hash)
            return False, None
        return await asyncio.to_thread(self._verify, password, hashed)

    def _verify(self, password: str, hashed: str) -> tuple[bool, str | None]:
        try:
            ok, new_hash = self._context.verify_and_update(password, hashed)
        except (ValueError, UnknownHashError):  # bcrypt refuses > 72 bytes; corrupt hash
            return False, None
        return bool(ok), new_hash
