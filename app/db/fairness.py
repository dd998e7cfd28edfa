"""Noisy-neighbour fairness: a per-tenant cap on the connections one tenant holds at once.

A unit of work with a tenant takes a slot of `(tenant, role)` here before it queues for a pooled
connection (DatabaseNode.acquire), and gives it back when it releases the connection. The cap is
the tenant's policy (`db_concurrency_primary` / `db_concurrency_replica`, per process; role is
the node's: a read that falls back to the primary counts against the primary cap). At its cap a
request waits up to `tenancy.db_wait_seconds` (FIFO per tenant), then gets 503
`database.tenant_busy` + Retry-After, while other tenants keep queueing for the pool as usual.

The cap is read from the policy on every acquire (a dict get on the policy cache), so a plan
change applies to the next request; slots already held are never taken back. Counting is plain
integers on the event loop (no locks); a waiter is handed its slot by the releaser, and a waiter
cancelled or timed out after being handed one gives it back, so no path leaks a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from app.core.errors import TenantDatabaseBusy

ROLES = ("primary", "replica")


class _Policy(Protocol):
    def db_concurrency(self, role: str) -> int: ...


class PolicySource(Protocol):
    """The tenant policy cache (app/tenancy/policies.py TenantPolicies)."""

    def cached(self, tenant_id: uuid.UUID) -> _Policy | None: ...

    async def policy_for(self, tenant_id: uuid.UUID) -> _Policy: ...


class _Slots:
    __slots__ = ("in_use", "limit", "rejected", "waiters")

    def __init__(self, limit: int) -> None:
        self.in_use = 0
        self.limit = limit
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.rejected = 0


@dataclass(frozen=True, slots=True)
class TenantUsage:
    tenant_id: uuid.UUID
    role: str
    in_use: int
    waiting: int
    limit: int
    rejected: int


class TenantGate:
    def __init__(self, policies: PolicySource, wait_seconds: float, retry_after: int = 1) -> None:
        self._policies = policies
        self._wait = wait_seconds
        self._retry_after = retry_after
        self._slots: dict[tuple[uuid.UUID, str], _Slots] = {}
        self.rejected = dict.fromkeys(ROLES, 0)

    async def acquire(self, tenant_id: uuid.UUID, role: str) -> None:
        """Take one of the tenant's slots for `role`, or raise TenantDatabaseBusy."""
        policy = self._policies.cached(tenant_id)
        if policy is None:
            policy = await self._policies.policy_for(tenant_id)
        limit = policy.db_concurrency(role)
        key = (tenant_id, role)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(limit)
        else:
            slots.limit = limit
        if slots.in_use < limit and not slots.waiters:
            slots.in_use += 1
            return
        if limit > 0 and self._wait > 0:
            if slots.in_use < limit:  # room made by a raised limit: wake the queue first
                self._hand_over(slots)
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            slots.waiters.append(future)
            try:
                async with asyncio.timeout(self._wait):
                    await future
                return  # handed a slot by a releaser
            except TimeoutError:
                pass
            except BaseException:
                self._abandon(slots, future)
                raise
            self._abandon(slots, future)
        slots.rejected += 1
        self.rejected[role] = self.rejected.get(role, 0) + 1
        raise TenantDatabaseBusy(
            f"this tenant already uses its {limit} concurrent {role} database connection(s)",
            retry_after=self._retry_after,
        )

    def release(self, tenant_id: uuid.UUID, role: str) -> None:
        slots = self._slots[(tenant_id, role)]
        slots.in_use -= 1
        self._hand_over(slots)

    def _hand_over(self, slots: _Slots) -> None:
        """Give free slots to waiters, oldest first (skipping any that already gave up)."""
        while slots.waiters and slots.in_use < slots.limit:
            future = slots.waiters.popleft()
            if not future.done():
                slots.in_use += 1
                future.set_result(None)

    def _abandon(self, slots: _Slots, future: asyncio.Future[None]) -> None:
        """A waiter gives up (timeout or cancellation): if a slot was handed to it in the
        meantime it goes back (to the next waiter); else it leaves the queue."""
        if future.done() and not future.cancelled():
            slots.in_use -= 1
            self._hand_over(slots)
            return
        future.cancel()
        with contextlib.suppress(ValueError):
            slots.waiters.remove(future)

    # -- observability ----------------------------------------------------------------------

    def usage(self, tenant_id: uuid.UUID | None = None) -> Iterator[TenantUsage]:
        """Per (tenant, role) figures; only tenants seen since start (idle ones included)."""
        for (tid, role), slots in list(self._slots.items()):
            if tenant_id is not None and tid != tenant_id:
                continue
            yield TenantUsage(
                tid, role, slots.in_use, len(slots.waiters), slots.limit, slots.rejected
            )

    def busy(self) -> list[TenantUsage]:
        """(tenant, role) pairs holding or waiting for a connection now, most held first."""
        active = [u for u in self.usage() if u.in_use or u.waiting]
        return sorted(active, key=lambda u: (-u.in_use, -u.waiting, str(u.tenant_id)))
