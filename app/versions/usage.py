"""Who uses which API version: counted per request in memory, written once per
`api.usage_flush_seconds` as one upsert per (tenant, version, day), read by
`storefront api usage [--deprecated]` so an operator knows whom to contact before a sunset.

Requests served a deprecated version are also a metric (`storefront_api_deprecated_requests`),
per process and live; the table is the fleet's total, as coarse as the flush.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Protocol

import structlog

from app.core.clock import Clock
from app.core.tasks import flushing
from app.db.uow import UnitOfWorkFactory

log = structlog.get_logger(__name__)


class DeprecatedCounter(Protocol):
    def deprecated_request(self, version: str, tenant_id: uuid.UUID | None) -> None: ...


@dataclass(frozen=True)
class VersionUse:
    tenant_id: uuid.UUID
    slug: str
    version: str
    requests: int
    last_seen_at: datetime


class VersionUsage:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, clock: Clock, metrics: DeprecatedCounter
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._metrics = metrics
        self._pending: dict[tuple[uuid.UUID, str, date], tuple[int, datetime]] = {}

    def seen(self, version: str, tenant_id: uuid.UUID | None, deprecated: bool) -> None:
        """One response served `version` (a dict update; nothing is written here)."""
        if deprecated:
            self._metrics.deprecated_request(version, tenant_id)
        if tenant_id is None:
            return
        now = self._clock.now()
        key = (tenant_id, version, now.date())
        count, _ = self._pending.get(key, (0, now))
        self._pending[key] = (count + 1, now)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        if not pending:
            return
        rows = [(t, v, d, n, at) for (t, v, d), (n, at) in pending.items()]
        try:
            async with self._uow() as uow:
                await uow.api_usage.add(rows)
                await uow.commit()
        except Exception as error:  # keep them for the next flush
            log.warning("api.usage_flush_failed", error=repr(error))
            for tenant, version, day, count, at in rows:
                before, _ = self._pending.get((tenant, version, day), (0, at))
                self._pending[(tenant, version, day)] = (before + count, at)

    async def report(self, since: date, versions: list[str] | None) -> list[VersionUse]:
        """Requests per tenant and version since `since` (only `versions`, when given)."""
        async with self._uow(read_only=True, strong=True) as uow:
            rows: list[Any] = await uow.api_usage.since(since, versions)
        return [VersionUse(*row) for row in rows]


async def version_usage_flusher(usage: VersionUsage, interval: float) -> AsyncIterator[None]:
    """Resource: flushes every `interval` seconds, and once more on shutdown."""
    async with flushing(usage.flush, interval, "api-version-usage-flusher"):
        yield
