"""What the hot path trusts without a database round trip, and for how long.

- verified API keys (by secret hash) for `auth.api_key_cache_ttl_seconds`;
- verified access tokens (by the token string) until they expire, which skips the signature
  check on repeated use;
- users' current role (or their absence), by (tenant, user), for `auth.user_cache_ttl_seconds`.

Revocations (logout, password change, refresh reuse, user deletion, API-key revocation) are
tombstones: ids refused until every access token or cached credential that could name them has
expired (`tombstone_seconds`, see app/identity/revocations.py), timed by the container's clock.
They are durable (the `revocations` table, written in the revoking transaction) and reach every
process through the invalidation channel (app/db/invalidation.py): NOTIFY within milliseconds,
a periodic re-read otherwise, the whole table at start-up. Role changes and key rotations made
elsewhere drop the cached entries the same way (`forget_user`, `forget_api_key`).

Caches are bounded and evict their oldest entry when full (never wholesale), so random garbage
cannot grow them and cannot flush what matters. Tombstones are bounded by time, not by count:
dropping one would bring a session back, and each costs the attacker a login (argon2) or more.
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Generic, TypeVar

from app.core.clock import Clock
from app.identity.principal import Principal
from app.identity.tokens import AccessClaims

K = TypeVar("K")
V = TypeVar("V")
# How long "changed here lately" makes a read go to the primary: longer than any replica may
# lag and still serve reads (routing.max_replica_lag_seconds).
CHANGED_SECONDS = 600.0
# How long a key that authenticated here is exempt from its address's failed-key throttle.
RECENT_API_KEY_SECONDS = 3600.0


class TtlMap(Generic[K, V]):
    """A bounded map whose entries expire (monotonic time). When full, a put evicts the oldest
    entry (insertion order; a re-put counts as new): O(1), one entry, never the whole map."""

    def __init__(
        self, ttl: float, max_entries: int = 10_000, now: Callable[[], float] | None = None
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._now = now or time.monotonic
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < self._now():
            del self._entries[key]
            return None
        return entry[1]

    def put(self, key: K, value: V, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else min(ttl, self.ttl)
        if ttl <= 0:
            return
        entries = self._entries
        if entries.pop(key, None) is None:
            while len(entries) >= self.max_entries:
                entries.popitem(last=False)
        entries[key] = (self._now() + ttl, value)

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def drop_where(self, doomed: set[uuid.UUID], attribute: str) -> None:
        for key, (_, value) in list(self._entries.items()):
            if getattr(value, attribute) in doomed:
                del self._entries[key]

    def drop_keys(self, doomed: Callable[[K], bool]) -> None:
        for key in [k for k in self._entries if doomed(k)]:
            del self._entries[key]


class Tombstones:
    """Revoked ids -> until when (container clock, as a timestamp). A lookup of a live id is one
    dict lookup; the clock is read only when the id is found."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[uuid.UUID, float] = {}

    def __len__(self) -> int:
        return len(self._until)

    def add(self, some_id: uuid.UUID, until: float) -> None:
        if until > self._until.get(some_id, 0.0):
            self._until[some_id] = until

    def __contains__(self, some_id: uuid.UUID) -> bool:
        until = self._until.get(some_id)
        if until is None:
            return False
        if until > self._clock.now().timestamp():
            return True
        del self._until[some_id]
        return False

    def sweep(self) -> int:
        """Forget expired tombstones; returns how many."""
        now = self._clock.now().timestamp()
        gone = [k for k, until in self._until.items() if until <= now]
        for key in gone:
            del self._until[key]
        return len(gone)


class CredentialCache:
    def __init__(
        self, api_key_ttl: float, user_ttl: float, clock: Clock, tombstone_seconds: float
    ) -> None:
        self.api_keys: TtlMap[bytes, Principal] = TtlMap(api_key_ttl)
        # Keys (by secret hash) that authenticated here within the hour: a client address
        # blocked for failed keys still gets these looked up (dropped on revocation).
        self.recent_api_keys: TtlMap[bytes, Principal] = TtlMap(RECENT_API_KEY_SECONDS)
        self.tokens: TtlMap[str, AccessClaims] = TtlMap(float("inf"))
        # (tenant id, user id) -> role name; "": no such user in that tenant.
        self.user_roles: TtlMap[tuple[uuid.UUID, uuid.UUID], str] = TtlMap(user_ttl)
        self.tombstone_seconds = tombstone_seconds
        self._clock = clock
        self._revoked = Tombstones(clock)
        self._changed: TtlMap[uuid.UUID, bool] = TtlMap(CHANGED_SECONDS)

    def revoke(self, *ids: uuid.UUID) -> None:
        """Refuse these keys, users or token families for `tombstone_seconds` from now, and
        drop everything cached about them."""
        if not ids:
            return
        stamp = self._clock.now().timestamp() + self.tombstone_seconds
        for revoked in ids:
            self._revoked.add(revoked, stamp)
        self._drop(set(ids))

    def revoke_all(self, tombstones: Iterable[tuple[uuid.UUID, datetime]]) -> None:
        """Tombstones read from the database: (id, until)."""
        fresh: set[uuid.UUID] = set()
        for revoked, until in tombstones:
            if revoked not in self._revoked:
                fresh.add(revoked)
            self._revoked.add(revoked, until.timestamp())
        if fresh:  # only ids new to this process: the caches cannot hold the others
            self._drop(fresh)

    def _drop(self, doomed: set[uuid.UUID]) -> None:
        self.api_keys.drop_where(doomed, "id")
        self.recent_api_keys.drop_where(doomed, "id")
        self.tokens.drop_where(doomed, "user_id")
        self.tokens.drop_where(doomed, "family_id")
        self.user_roles.drop_keys(lambda key: key[1] in doomed)

    def is_revoked(self, some_id: uuid.UUID) -> bool:
        return some_id in self._revoked

    def sweep(self) -> int:
        return self._revoked.sweep()

    @property
    def tombstones(self) -> int:
        return len(self._revoked)

    def forget_api_key(self, *key_ids: uuid.UUID) -> None:
        """Drop keys so their next use reads them again (expiry or rotation changed), without
        refusing them."""
        self.api_keys.drop_where(set(key_ids), "id")
        for key_id in key_ids:
            self._changed.put(key_id, True)

    def forget_user(self, *user_ids: uuid.UUID) -> None:
        """Drop users' roles (they changed) so the next request reads them again."""
        doomed = set(user_ids)
        self.user_roles.drop_keys(lambda key: key[1] in doomed)
        for user_id in user_ids:
            self._changed.put(user_id, True)

    def changed_here(self, some_id: uuid.UUID) -> bool:
        """Changed lately (here, or elsewhere as announced on the invalidation channel): read
        it from the primary, where the change is (a replica may still hand back the old row)."""
        return self._changed.get(some_id) is not None
