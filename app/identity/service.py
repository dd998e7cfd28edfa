"""API keys: issue (secret shown once), authenticate (cached), revoke."""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from datetime import timedelta

from app.core.clock import Clock
from app.core.errors import NotFound, Unauthenticated, Unprocessable
from app.db.uow import UnitOfWorkFactory
from app.identity.principal import SCOPES, Principal
from app.identity.repository import ApiKeyRecord

SECRET_PREFIX = "sf_live_"
# Longer than any replica may lag and still serve reads (routing.max_replica_lag_seconds).
_REVOKED_MEMORY_SECONDS = 600.0


class InvalidScopes(Unprocessable):
    code = "api_key.invalid_scopes"
    title = "Invalid scopes"


class ApiKeyNotFound(NotFound):
    code = "api_key.not_found"
    title = "API key not found"


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


class ApiKeyCache:
    """Verified keys, trusted for `ttl` seconds, so the hot path has no auth round trip.

    A revoke through this process takes effect at once (entry dropped, id remembered as
    revoked); other processes stop accepting the key within `ttl` plus replica lag (documented
    in docs/decisions.md). Bounded so random garbage cannot grow it.
    """

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._revoked: dict[uuid.UUID, float] = {}

    def get(self, key: bytes) -> Principal | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: bytes, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, principal)

    def drop_key(self, key_id: uuid.UUID) -> None:
        """Forget a revoked key now, and refuse it for a while: a replica that has not replayed
        the revocation yet would otherwise hand it back as valid."""
        for digest, (_, principal) in list(self._entries.items()):
            if principal.id == key_id:
                del self._entries[digest]
        if len(self._revoked) >= self.max_entries:
            self._revoked.clear()
        self._revoked[key_id] = time.monotonic() + _REVOKED_MEMORY_SECONDS

    def is_revoked(self, key_id: uuid.UUID) -> bool:
        until = self._revoked.get(key_id)
        return until is not None and until > time.monotonic()


class ApiKeyService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock, cache: ApiKeyCache) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._cache = cache

    async def issue(
        self,
        tenant_id: uuid.UUID,
        name: str,
        scopes: list[str],
        expires_in_days: int | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        unknown = sorted(set(scopes) - SCOPES)
        if unknown or not scopes:
            raise InvalidScopes(f"unknown or empty scopes: {', '.join(unknown) or '(none)'}")
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        expires_at = None
        if expires_in_days is not None:
            expires_at = self._clock.now() + timedelta(days=expires_in_days)
        async with self._uow(tenant_id) as uow:
            record = await uow.api_keys.add(
                uuid.uuid4(),
                name,
                secret[:12],
                hash_secret(secret),
                sorted(set(scopes)),
                expires_at,
            )
            await uow.commit()
        return record, secret

    async def authenticate(self, secret: str) -> Principal:
        if not secret.startswith(SECRET_PREFIX) or len(secret) > 200:
            raise Unauthenticated("invalid API key")
        digest = hash_secret(secret)
        principal = self._cache.get(digest)
        if principal is None:
            record = await self._lookup(digest)
            if record is None or record.revoked_at is not None or self._cache.is_revoked(record.id):
                raise Unauthenticated("invalid API key")
            principal = Principal(
                kind="api_key",
                id=record.id,
                tenant_id=record.tenant_id,
                scopes=frozenset(record.scopes),
                expires_at=record.expires_at,
            )
            self._cache.put(digest, principal)
        if principal.expires_at is not None and principal.expires_at <= self._clock.now():
            raise Unauthenticated("API key expired")
        return principal

    async def _lookup(self, digest: bytes) -> ApiKeyRecord | None:
        """Replica first; a miss is retried on the primary (the key may be seconds old)."""
        for strong in (False, True):
            async with self._uow(read_only=True, strong=strong) as uow:
                record = await uow.api_keys.by_secret_hash(digest)
            if record is not None:
                return record
        return None

    async def list(self, tenant_id: uuid.UUID) -> list[ApiKeyRecord]:
        async with self._uow(tenant_id, read_only=True) as uow:
            return await uow.api_keys.list()

    async def revoke(self, tenant_id: uuid.UUID, key_id: uuid.UUID) -> None:
        async with self._uow(tenant_id) as uow:
            if not await uow.api_keys.revoke(key_id, self._clock.now()):
                raise ApiKeyNotFound()
            await uow.commit()
        self._cache.drop_key(key_id)
