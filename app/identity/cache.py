"""What the hot path trusts without a database round trip, and for how long.

- verified API keys (by secret hash) for `auth.api_key_cache_ttl_seconds`;
- verified access tokens (by the token string) until they expire, which skips the signature
  check on repeated use;
- users' current role (or their absence) for `auth.user_cache_ttl_seconds`.

A revocation, rotation, role change or deletion made through this process takes effect at once
(entries dropped, revoked ids remembered as tombstones so a lagging replica cannot hand them
back); other processes see it within the TTL (plus replica lag). Every map is bounded so random
garbage cannot grow it.
"""

from __future__ import annotations

import time
import uuid
from typing import Generic, TypeVar

from app.identity.principal import Principal
from app.identity.tokens import AccessClaims

K = TypeVar("K")
V = TypeVar("V")
# Longer than any replica may lag and still serve reads (routing.max_replica_lag_seconds).
TOMBSTONE_SECONDS = 600.0


class TtlMap(Generic[K, V]):
    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + ttl, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, doomed: set[uuid.UUID], attribute: str) -> None:
        for key, (_, value) in list(self._entries.items()):
            if getattr(value, attribute) in doomed:
                del self._entries[key]


class CredentialCache:
    def __init__(self, api_key_ttl: float, user_ttl: float) -> None:
        self.api_keys: TtlMap[bytes, Principal] = TtlMap(api_key_ttl)
        self.tokens: TtlMap[str, AccessClaims] = TtlMap(float("inf"))
        self.user_roles: TtlMap[uuid.UUID, str] = TtlMap(user_ttl)  # "": no such user
        self._revoked: TtlMap[uuid.UUID, bool] = TtlMap(TOMBSTONE_SECONDS)
        self._changed: TtlMap[uuid.UUID, bool] = TtlMap(TOMBSTONE_SECONDS)

    def revoke(self, *ids: uuid.UUID) -> None:
        """Refuse these keys, users or token families from now on (in this process)."""
        for revoked in ids:
            self._revoked.put(revoked, True)
        doomed = set(ids)
        self.api_keys.drop_where(doomed, "id")
        self.tokens.drop_where(doomed, "user_id")
        self.tokens.drop_where(doomed, "family_id")
        for user_id in ids:
            self.user_roles.pop(user_id)

    def is_revoked(self, some_id: uuid.UUID) -> bool:
        return self._revoked.get(some_id) is not None

    def forget_api_key(self, key_id: uuid.UUID) -> None:
        """Drop a key so its next use reads it again (its expiry changed), without refusing it."""
        self.api_keys.drop_where({key_id}, "id")
        self._changed.put(key_id, True)

    def forget_user(self, user_id: uuid.UUID) -> None:
        """Drop a user's role (it changed) so the next request reads it again."""
        self.user_roles.pop(user_id)
        self._changed.put(user_id, True)

    def changed_here(self, some_id: uuid.UUID) -> bool:
        """Changed by this process lately: read it from the primary, where the change is (a
        replica may still hand back the old row)."""
        return self._changed.get(some_id) is not None
