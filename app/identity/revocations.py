"""Revocations that survive restarts and reach every process.

Writing (inside the revoking use case's transaction): `record(uow, ids)` inserts the ids into
`revocations` with `expires_at = now + tombstone_seconds` and announces them on the
invalidation channel (NOTIFY at commit: a rolled-back revocation announces nothing). Role
changes and key rotations are announced only (`user_changed`, `api_key_changed`): nothing is
refused, other processes just drop what they cached.

Reading (every API process; an invalidation-channel subscriber): the start-up load takes every
row that has not expired (by the container's clock) and purges the expired ones; each message
adds tombstones at once; `resync()` re-reads from the primary the rows recorded since the last
read (database time, minus `resync_margin` for transactions that committed late), so a missed
NOTIFY costs at most one re-read interval.

`tombstone_seconds` covers everything that could still carry a revoked id: an access token
(`access_ttl + leeway`) verified a moment before the revocation and cached credentials
(`max(api_key_cache_ttl, user_cache_ttl)`), plus the replica lag a read may have.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta

import structlog

from app.core.clock import Clock
from app.db.invalidation import Handler
from app.db.uow import UnitOfWork, UnitOfWorkFactory
from app.identity.cache import CredentialCache
from app.settings import AuthSettings, RoutingSettings

log = structlog.get_logger(__name__)
REVOKED = "identity.revoked"
USER_CHANGED = "identity.user_changed"
API_KEY_CHANGED = "identity.api_key_changed"
SWEEP_SECONDS = 60.0


def tombstone_seconds(auth: AuthSettings, routing: RoutingSettings) -> float:
    """One number for every kind of revocation (see the module docstring)."""
    tokens = auth.tokens
    caches = max(auth.api_key_cache_ttl_seconds, auth.user_cache_ttl_seconds)
    lag = routing.max_replica_lag_seconds
    return tokens.access_ttl_seconds + tokens.leeway_seconds + caches + lag


def _uuids(ids: list[str]) -> list[uuid.UUID]:
    return [uuid.UUID(i) for i in ids]


class Revocations:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        cache: CredentialCache,
        resync_margin_seconds: float,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._cache = cache
        self._margin = timedelta(seconds=resync_margin_seconds)
        self._cursor: datetime | None = None  # database time of the last read
        self._swept_at = 0.0

    # -- writing, inside the caller's transaction --------------------------------------------

    async def record(self, uow: UnitOfWork, ids: list[uuid.UUID]) -> None:
        if not ids:
            return
        expires_at = self._clock.now() + timedelta(seconds=self._cache.tombstone_seconds)
        await uow.revocations.add(ids, expires_at)
        await uow.invalidations.publish(REVOKED, [str(i) for i in ids])

    async def user_changed(self, uow: UnitOfWork, user_id: uuid.UUID) -> None:
        await uow.invalidations.publish(USER_CHANGED, [str(user_id)])

    async def api_key_changed(self, uow: UnitOfWork, key_id: uuid.UUID) -> None:
        await uow.invalidations.publish(API_KEY_CHANGED, [str(key_id)])

    # -- reading: an invalidation-channel subscriber ------------------------------------------

    @property
    def topics(self) -> Mapping[str, Handler]:
        return {
            REVOKED: lambda ids: self._cache.revoke(*_uuids(ids)),
            USER_CHANGED: lambda ids: self._cache.forget_user(*_uuids(ids)),
            API_KEY_CHANGED: lambda ids: self._cache.forget_api_key(*_uuids(ids)),
        }

    async def close(self) -> None:
        """Nothing to stop: messages update the cache in place."""

    async def resync(self) -> None:
        now = self._clock.now()
        if self._cursor is None:
            try:
                await self.purge()
            except Exception as error:  # the load matters, the purge can wait
                log.warning("revocations.purge_failed", error=repr(error))
            async with self._uow(read_only=True, strong=True) as uow:
                cursor, rows = await uow.revocations.live(now)
            log.info("revocations.loaded", count=len(rows))
        else:
            async with self._uow(read_only=True, strong=True) as uow:
                cursor, rows = await uow.revocations.since(self._cursor - self._margin)
        self._cache.revoke_all(rows)
        self._cursor = cursor
        if now.timestamp() - self._swept_at > SWEEP_SECONDS:
            self._swept_at = now.timestamp()
            self._cache.sweep()

    async def purge(self) -> int:
        """Delete rows that have expired (by the container's clock): at start-up and by the
        worker's housekeeping."""
        async with self._uow() as uow:
            gone = await uow.revocations.purge(self._clock.now())
            await uow.commit()
        return gone
