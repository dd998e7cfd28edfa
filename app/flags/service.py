"""Feature-flag use cases (operator: list, set, override) and the in-process snapshot.

Writes publish `flags.changed` on the invalidation channel inside their transaction; every API
process's `FlagStore` (an invalidation-channel subscriber, listed in containers.py) then reloads
the whole snapshot from the primary (a few rows: two queries), at once on the message and every
`invalidation.resync_interval_seconds` in case a message was missed. Evaluation never touches the
database: it reads the snapshot (app/flags/provider.py).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Mapping

import structlog

from app.core.clock import Clock
from app.core.tasks import TaskSet
from app.db.invalidation import Handler
from app.db.uow import UnitOfWorkFactory
from app.flags.errors import FlagNotFound, InvalidFlag
from app.flags.repository import FlagRecord
from app.flags.rules import BUCKETS, FlagRule, Snapshot

log = structlog.get_logger(__name__)
CHANGED = "flags.changed"
_KEY = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")


class FlagService:
    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow_factory
        self._clock = clock

    async def list(self) -> list[FlagRecord]:
        async with self._uow(read_only=True, strong=True) as uow:
            return await uow.flags.all()

    async def set(
        self,
        key: str,
        *,
        enabled: bool | None = None,
        rollout_buckets: int | None = None,
        description: str | None = None,
    ) -> FlagRecord:
        """Create the flag or change the fields given (None: unchanged)."""
        if not _KEY.fullmatch(key):
            raise InvalidFlag("a flag key is 1-100 of [a-z0-9_.-], starting with a letter/digit")
        if rollout_buckets is not None and not 0 <= rollout_buckets <= BUCKETS:
            raise InvalidFlag(f"rollout_buckets must be within 0..{BUCKETS}")
        async with self._uow() as uow:
            await uow.flags.upsert(key, enabled, rollout_buckets, description, self._clock.now())
            flag = await uow.flags.get(key)
            await uow.invalidations.publish(CHANGED, [key])
            await uow.commit()
        assert flag is not None
        return flag

    async def override(self, key: str, tenant_id: uuid.UUID, value: bool | None) -> FlagRecord:
        """Force the flag on or off for one tenant; None clears the override."""
        async with self._uow() as uow:
            if await uow.flags.get(key) is None:
                raise FlagNotFound(f"no feature flag '{key}'")
            if value is None:
                await uow.flags.clear_override(key, tenant_id)
            else:
                await uow.flags.set_override(key, tenant_id, value, self._clock.now())
            flag = await uow.flags.get(key)
            await uow.invalidations.publish(CHANGED, [key])
            await uow.commit()
        assert flag is not None
        return flag


def snapshot_of(records: list[FlagRecord]) -> Snapshot:
    return Snapshot(
        {
            r.key: FlagRule(
                r.key,
                r.enabled,
                r.rollout_buckets,
                r.description,
                {str(t): v for t, v in r.overrides.items()},
            )
            for r in records
        }
    )


class FlagStore:
    """The process's snapshot of every flag, an invalidation-channel subscriber.

    Reloads are serialized (a lock, FIFO), so the snapshot installed last was also read last;
    a message that arrives while a reload is already queued (not yet reading) adds nothing.
    Until the first load (the listener runs it before the process serves) every flag is off.
    """

    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory
        self.snapshot = Snapshot()
        self.loaded = False
        self._lock = asyncio.Lock()
        self._queued = False
        self._tasks = TaskSet()

    @property
    def topics(self) -> Mapping[str, Handler]:
        return {CHANGED: lambda _ids: self._reload_soon()}

    async def resync(self) -> None:
        await self.reload()

    async def reload(self) -> None:
        async with self._lock:
            self._queued = False
            async with self._uow(read_only=True, strong=True) as uow:
                records = await uow.flags.all()
            self.snapshot = snapshot_of(records)
        if not self.loaded:
            self.loaded = True
            log.info("flags.loaded", count=len(records))

    def _reload_soon(self) -> None:
        if self._queued:
            return
        self._queued = True
        self._tasks.spawn(self._reload_logged())

    async def close(self) -> None:
        """Stop the reloads messages started (before the database closes)."""
        await self._tasks.cancel_all()

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except Exception as error:  # the periodic resync retries
            self._queued = False
            log.warning("flags.reload_failed", error=repr(error))
