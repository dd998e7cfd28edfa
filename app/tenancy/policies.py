"""The per-process cache of effective tenant policies, kept fresh across processes.

Reading (every request): `cached(tenant_id)` is one dict get (None on a miss);
`await policy_for(tenant_id)` is the same dict get, and only on a miss one query (the first
use loads every tenant with one query; a tenant created since is read alone). The rate
limiter and the database fairness gate call these on every request.

Freshness: an invalidation-channel subscriber (app/db/invalidation.py). Writers
(TenancyService) update the tenants row (`config_updated_at = now()`) and publish
`tenancy.changed` with the tenant id in the same transaction; each process's handler re-reads
those tenants from the primary at once (the old policy serves until the new one is in: the hot
path never misses because of a change). `resync()` (start-up, every
`invalidation.resync_interval_seconds`, after a LISTEN reconnect) re-reads the tenants whose
`config_updated_at` moved since the last read, by database time minus
`invalidation.resync_margin_seconds`: a missed NOTIFY costs at most one interval.
A policy is replaced only by one read from a row at least as new (`config_updated_at`), so
concurrent re-reads cannot put an older one back.
"""

from __future__ import annotations

import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from app.core.errors import DatabaseUnavailable
from app.core.tasks import TaskSet
from app.db.invalidation import Handler
from app.db.uow import UnitOfWorkFactory
from app.settings import PlanSettings, TenancySettings
from app.tenancy.policy import TenantPolicy, resolve
from app.tenancy.repository import TenantConfigRecord

log = structlog.get_logger(__name__)
CHANGED = "tenancy.changed"


class TenantPolicies:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        settings: TenancySettings,
        plans: Mapping[str, PlanSettings],
        resync_margin_seconds: float,
    ) -> None:
        self._uow = uow_factory
        self._defaults = settings.defaults
        self._plans = dict(plans)
        self._margin = timedelta(seconds=resync_margin_seconds)
        self._policies: dict[uuid.UUID, TenantPolicy] = {}
        self._stamps: dict[uuid.UUID, datetime] = {}
        self._cursor: datetime | None = None  # database time of the last full/partial read
        self._tasks = TaskSet()
        self._warned_plans: set[str] = set()
        self.loaded_at: datetime | None = None  # database time of the last successful read

    @property
    def plans(self) -> Mapping[str, PlanSettings]:
        return self._plans

    # -- the hot path -----------------------------------------------------------------------

    def cached(self, tenant_id: uuid.UUID) -> TenantPolicy | None:
        """This process's policy for the tenant, or None when not loaded yet (no I/O)."""
        return self._policies.get(tenant_id)

    async def policy_for(self, tenant_id: uuid.UUID) -> TenantPolicy:
        """The tenant's effective policy: a dict get, or on a miss one query. A tenant without
        a row, or a failed read, gets the defaults (not cached: asked again next time)."""
        policy = self._policies.get(tenant_id)
        if policy is not None:
            return policy
        try:
            if self._cursor is None:
                await self.resync()
            else:
                await self._reload([tenant_id])
        except Exception as error:  # the request's own query will tell if the database is down
            log.warning("tenancy.policy_load_failed", tenant_id=str(tenant_id), error=repr(error))
        return self._policies.get(tenant_id) or self.fallback(tenant_id)

    async def api_version_of(self, tenant_id: uuid.UUID) -> str | None:
        """The tenant's pinned API version (app/http/versioning.py). When the tenant's row cannot
        be read, 503: serving another version's shape than the pin would break its clients, and
        the traffic fallback (`tenancy.defaults`) has no version to fall back to."""
        policy = self._policies.get(tenant_id) or await self.policy_for(tenant_id)
        if tenant_id not in self._policies:
            raise DatabaseUnavailable("the tenant's API version cannot be read now; retry shortly")
        return policy.api_version

    def fallback(self, tenant_id: uuid.UUID) -> TenantPolicy:
        return resolve(tenant_id, "", {}, {}, defaults=self._defaults, plans={})

    def resolve(self, record: TenantConfigRecord) -> TenantPolicy:
        policy = resolve(
            record.id,
            record.plan,
            record.overrides,
            record.emergency,
            defaults=self._defaults,
            plans=self._plans,
        )
        policy = replace(policy, api_version=record.api_version)
        if not policy.plan_known and record.plan not in self._warned_plans:
            self._warned_plans.add(record.plan)
            log.warning("tenancy.unknown_plan", plan=record.plan, fallback="tenancy.defaults")
        return policy

    # -- an invalidation-channel subscriber ---------------------------------------------------

    @property
    def topics(self) -> Mapping[str, Handler]:
        return {CHANGED: self._changed}

    def _changed(self, ids: list[str]) -> None:
        tenant_ids = [uuid.UUID(i) for i in ids]
        self._spawn(self._reload_logged(tenant_ids))

    async def resync(self) -> None:
        """First call: every tenant (one query). Then: the tenants changed since the last read."""
        async with self._uow(read_only=True, strong=True) as uow:
            if self._cursor is None:
                cursor, rows = await uow.tenant_config.all()
                log.info("tenancy.loaded", tenants=len(rows))
            else:
                cursor, rows = await uow.tenant_config.since(self._cursor - self._margin)
        self._store(rows)
        self._cursor = self.loaded_at = cursor

    async def _reload(self, tenant_ids: list[uuid.UUID]) -> None:
        async with self._uow(read_only=True, strong=True) as uow:
            rows = [await uow.tenant_config.get(tid) for tid in tenant_ids]
        self._store([row for row in rows if row is not None])

    async def _reload_logged(self, tenant_ids: list[uuid.UUID]) -> None:
        try:
            await self._reload(tenant_ids)
        except Exception as error:  # the periodic resync re-reads it
            log.warning("tenancy.reload_failed", error=repr(error))

    def _store(self, rows: list[TenantConfigRecord]) -> None:
        for row in rows:
            seen = self._stamps.get(row.id)
            if seen is not None and row.config_updated_at < seen:
                continue  # an older read finishing late
            self._stamps[row.id] = row.config_updated_at
            self._policies[row.id] = self.resolve(row)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        self._tasks.spawn(work)

    async def close(self) -> None:
        """Stop the re-reads messages started (before the database closes)."""
        await self._tasks.cancel_all()
