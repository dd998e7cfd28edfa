"""`storefront events replay --projection NAME [--tenant SLUG]`: rebuild a read model from the
retained event log (the outbox, app/events/types.py versions upcast) and swap it in.

Per tenant, with a fresh run id:
1. build: every event of the projection's topics, by log position, is applied to the
   projection's rebuild table (rows tagged with the run), recording each in the inbox under the
   run's own consumer name (`sales_daily:replay:<run>`), one transaction per batch;
2. catch up: events the position missed (a transaction that committed after later ones) and
   those that arrived meanwhile, found by the run's inbox, until a pass finds less than a batch;
3. swap, in one transaction: the consumer's inbox lock for the tenant taken exclusively (the
   live consumer takes it shared before applying an event, so it waits; `lock_timeout`, 5
   attempts), the last events applied, the tenant's live rows replaced by the rebuild's, and the
   run's inbox handed to the live consumer (so an event the rebuild applied first is a no-op
   when the live consumer gets it). Readers see the old rows until the commit, then the new;
4. the rebuild's rows and the run's inbox are deleted (also when the replay fails).

The live read model keeps serving and keeps being fed throughout. A tenant's swap is atomic;
a replay of every tenant swaps them one after another (a report reads one tenant). An event
the projection refuses for good (`PermanentEventFailure`, e.g. a malformed payload) is left out
and reported, as the live consumer dead-letters it. Before anything is built, a replay is
refused if the live consumer has applied an event the log no longer holds (purged: see
`outbox.retention_days`), since the rebuild would silently lack it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

import asyncpg
import structlog

from app.db.uow import UnitOfWork, UnitOfWorkFactory, read
from app.events.errors import (
    LogIncomplete,
    PermanentEventFailure,
    ReplayBusy,
    UnknownProjection,
)
from app.events.repository import Event
from app.settings import OutboxSettings
from app.tenants.service import TenantNotFound

log = structlog.get_logger(__name__)
SWAP_ATTEMPTS = 5


class Projection(Protocol):
    """A read model a replay can rebuild; `name` is also its consumer's inbox name."""

    name: str
    topics: tuple[str, ...]

    async def apply(self, uow: UnitOfWork, event: Event, run: uuid.UUID | None = None) -> None:
        """Apply `event` to the live table (run None) or to run's rebuild; raises
        PermanentEventFailure for an event it can never apply."""
        ...

    async def swap(self, uow: UnitOfWork, run: uuid.UUID) -> tuple[str, str]:
        """Replace the tenant's live rows by run's rebuild; returns the (live, rebuilt)
        checksums of the tenant's rows just before."""
        ...

    async def discard(self, uow: UnitOfWork, run: uuid.UUID) -> None: ...


@dataclass(frozen=True, slots=True)
class TenantReplay:
    tenant_id: uuid.UUID
    slug: str
    events: int  # applied to the rebuild
    skipped: tuple[uuid.UUID, ...]  # refused by the projection for good (left out)
    live_checksum: str  # of the tenant's live rows just before the swap
    rebuilt_checksum: str  # of the rebuild, now live


@dataclass(slots=True)
class _Run:
    projection: Projection
    tenant_id: uuid.UUID
    run: uuid.UUID = field(default_factory=uuid.uuid4)
    events: int = 0
    skipped: list[uuid.UUID] = field(default_factory=list)

    @property
    def consumer(self) -> str:
        return f"{self.projection.name}:replay:{self.run}"


class _Refused(Exception):
    def __init__(self, event_id: uuid.UUID, cause: PermanentEventFailure) -> None:
        super().__init__(f"{event_id}: {cause!r}")
        self.event_id = event_id


Page = list[tuple[int, Event]]


class Replayer:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        projections: Iterable[Projection],
        settings: OutboxSettings,
    ) -> None:
        self._uow = uow_factory
        self._projections = {p.name: p for p in projections}
        self._batch = settings.replay_batch_size
        self._lock_timeout_ms = settings.replay_lock_timeout_ms

    @property
    def projections(self) -> list[str]:
        return sorted(self._projections)

    async def replay(self, projection: str, tenant: str | None = None) -> list[TenantReplay]:
        """Rebuild `projection` for the tenant with slug `tenant` (None: every tenant)."""
        target = self._projections.get(projection)
        if target is None:
            known = ", ".join(self.projections)
            raise UnknownProjection(f"no projection {projection!r} (known: {known})")
        tenants = await self._tenants(tenant)
        for tenant_id, slug in tenants:
            missing = await read(
                self._uow, tenant_id, lambda u: u.inbox.missing_from_log(target.name), strong=True
            )
            if missing:
                raise LogIncomplete(
                    f"{missing} event(s) that {projection} applied for tenant {slug} are no"
                    " longer in the outbox (purged after outbox.retention_days): a rebuild"
                    " would lack them; see docs/operations.md"
                )
        return [await self._rebuild(_Run(target, tenant_id), slug) for tenant_id, slug in tenants]

    async def _tenants(self, slug: str | None) -> list[tuple[uuid.UUID, str]]:
        if slug is None:
            every = await read(self._uow, None, lambda uow: uow.tenants.list(), strong=True)
            return [(t.id, t.slug) for t in every]
        found = await read(self._uow, None, lambda uow: uow.tenants.by_slug(slug), strong=True)
        if found is None:
            raise TenantNotFound(f"no tenant '{slug}'")
        return [(found.id, found.slug)]

    async def _rebuild(self, job: _Run, slug: str) -> TenantReplay:
        topics = list(job.projection.topics)
        log.info("events.replay_started", tenant=slug, run=str(job.run))
        try:
            after = 0  # log position: the build reads the log once, in order
            while page := await self._pass(job, self._log(topics, after)):
                after = page[-1][0]
            while len(await self._pass(job, self._not_applied(job, self._batch))) == self._batch:
                pass
            live, rebuilt = await self._swap(job)
        finally:
            await self._discard(job)
        log.info("events.replay_swapped", tenant=slug, events=job.events, same=live == rebuilt)
        return TenantReplay(job.tenant_id, slug, job.events, tuple(job.skipped), live, rebuilt)

    async def _discard(self, job: _Run) -> None:
        """The run's rebuild rows and inbox go; a failure here is logged, not raised (it would
        hide the replay's own outcome): the rows are tagged with the run, inert, and a later
        replay of the tenant does not read them."""
        try:
            async with self._uow(job.tenant_id) as uow:
                await job.projection.discard(uow, job.run)
                await uow.inbox.forget(job.consumer)
                await uow.commit()
        except Exception as error:
            log.warning("events.replay_cleanup_failed", run=str(job.run), error=repr(error))

    def _log(self, topics: list[str], after: int) -> Callable[[UnitOfWork], Awaitable[Page]]:
        return lambda uow: uow.outbox.log(topics, after, self._batch)

    def _not_applied(self, job: _Run, limit: int) -> Callable[[UnitOfWork], Awaitable[Page]]:
        topics = list(job.projection.topics)
        return lambda uow: uow.outbox.not_applied(topics, job.consumer, job.skipped, limit)

    async def _pass(self, job: _Run, fetch: Callable[[UnitOfWork], Awaitable[Page]]) -> Page:
        """One transaction: fetch a page and apply it to the rebuild. A refused event rolls the
        page back, is left out, and the page is applied again without it."""
        while True:
            try:
                async with self._uow(job.tenant_id) as uow:
                    page = await fetch(uow)
                    applied = await self._apply(uow, job, page)
                    await uow.commit()
            except _Refused as refused:
                job.skipped.append(refused.event_id)
                continue
            job.events += applied
            return page

    async def _apply(self, uow: UnitOfWork, job: _Run, page: Page) -> int:
        applied = 0
        for _, event in page:
            if event.id in job.skipped or not await uow.inbox.first_time(job.consumer, event.id):
                continue
            try:
                await job.projection.apply(uow, event, job.run)
            except PermanentEventFailure as error:
                log.warning("events.replay_refused", event_id=str(event.id), error=repr(error))
                raise _Refused(event.id, error) from error
            applied += 1
        return applied

    async def _swap(self, job: _Run) -> tuple[str, str]:
        """The catch-up's tail and the swap, in one transaction under the consumer's lock."""
        attempts = 0
        while True:
            try:
                async with self._uow(job.tenant_id) as uow:
                    await uow.inbox.hold(
                        job.projection.name, exclusive=True, timeout_ms=self._lock_timeout_ms
                    )
                    applied = 0
                    while page := await self._not_applied(job, self._batch)(uow):
                        applied += await self._apply(uow, job, page)
                    checksums = await job.projection.swap(uow, job.run)
                    await uow.inbox.adopt(job.consumer, job.projection.name)
                    await uow.commit()
            except _Refused as refused:
                job.skipped.append(refused.event_id)
                continue
            except asyncpg.LockNotAvailableError as error:
                attempts += 1
                if attempts >= SWAP_ATTEMPTS:
                    raise ReplayBusy(
                        f"{job.projection.name}'s consumer held its lock through {attempts}"
                        f" waits of {self._lock_timeout_ms} ms; nothing was swapped, run again"
                    ) from error
                await asyncio.sleep(0.1 * attempts)
                continue
            job.events += applied
            return checksums
