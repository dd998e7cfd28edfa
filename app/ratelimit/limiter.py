"""Rate limiting on the `limits` library's sliding-window counter, with quota leased in batches.

`limits` owns the algorithm and the storage (`RedisStorage` through its redis-py implementation
when `redis.url` is set: one Lua script per hit, atomic, shared by every process; its
`MemoryStorage` otherwise: per process). This module adds three things the library leaves to
its caller:

- **Leasing** (`acquire`). A Redis round trip per request costs more than the hot path can pay,
  so a process takes quota in small batches: one `hit(cost=n)` counts n requests at once and the
  next n-1 requests are admitted from memory. The batch is an eighth of what the window still
  had at the last look (at most `max_lease`, at least 1), so it shrinks as the quota runs out
  and the last units go one at a time: what the processes hold unused when a quota runs out is
  at most a few units. A lease lapses after `lease_seconds` (and never outlives the window it
  was taken in by more than that), so an idle process does not sit on quota.
  `RateLimit`'s `r` is the window's remaining quota after the lease plus the lease's unused
  units: within one process it never increases within a window; across processes it can lag by
  what another process leased.
- **Refusals from memory.** Once a key is refused, the process refuses it without a round trip
  until the library's reset time (when the sliding window frees a unit).
- **Fail open.** A storage error (Redis down, slow past its timeout) admits the request with no
  verdict (`remaining=None`), counts `storefront_rate_limit_fail_open_total`, logs once per
  outage, and skips the storage for `outage_seconds` so requests do not each wait a timeout.

`count`, `check` and `clear` are the exact (unleased) operations the login lockout uses.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class Quota:
    """`limit` requests per `window_seconds`; `name` is the policy's name in the headers."""

    name: str
    limit: int
    window_seconds: int

    def item(self) -> RateLimitItemPerSecond:
        return RateLimitItemPerSecond(self.limit, self.window_seconds, namespace="storefront")


@dataclass(frozen=True, slots=True)
class Verdict:
    quota: Quota
    allowed: bool
    # Requests left in the window after this one; None: unknown (the store failed, failed open).
    remaining: int | None
    reset_seconds: int  # until the quota frees up (refused: the Retry-After)


class _Lease:
    __slots__ = (
        "blocked_until",
        "estimate",
        "lock",
        "remaining",
        "reset_at",
        "units",
        "valid_until",
    )

    def __init__(self, estimate: int) -> None:
        self.units = 0  # admitted from memory before the next hit
        self.remaining = 0  # the window's remaining quota when the lease was taken
        self.valid_until = 0.0
        self.reset_at = 0.0  # when the window frees quota (the library's reset time)
        self.blocked_until = 0.0
        self.estimate = estimate  # the last known remaining quota: sizes the next lease
        self.lock = asyncio.Lock()


def _seconds(left: float, quota: Quota) -> int:
    """Whole seconds until the quota frees a unit: at least 1, at most the window (the store's
    key lives longer than the window it counts)."""
    return min(quota.window_seconds, max(1, math.ceil(left)))


# The exceptions a storage raises when it cannot answer (StorageError: wrap_exceptions=True).
_STORE_DOWN = (StorageError, OSError, TimeoutError)


class RateLimiter:
    def __init__(
        self,
        storage: Storage,
        *,
        max_lease: int,
        lease_seconds: float,
        outage_seconds: float,
        on_fail_open: Callable[[], None] = lambda: None,
        now: Callable[[], float] = time.time,
        max_keys: int = 50_000,
    ) -> None:
        self._storage = storage
        self._strategy = SlidingWindowCounterRateLimiter(storage)
        self._max_lease = max(1, max_lease)
        self._lease_seconds = lease_seconds
        self._outage_seconds = outage_seconds
        self._on_fail_open = on_fail_open
        # The library times windows with time.time(); leases and refusals must use the same.
        self._now = now
        self._max_keys = max_keys
        self._leases: OrderedDict[tuple[str, Quota], _Lease] = OrderedDict()
        self._down_until = 0.0
        self.fail_opens = 0

    @property
    def shared(self) -> bool:
        """True when every process counts in the same store."""
        return not isinstance(self._storage, MemoryStorage)

    async def acquire(self, key: str, quota: Quota) -> Verdict:
        """One request against `quota` for `key`: admitted from the process's lease when it
        holds one, else after one hit on the store."""
        lease = self._leases.get((key, quota))
        now = self._now()
        if lease is not None:
            verdict = self._from_memory(lease, quota, now)
            if verdict is not None:
                return verdict
        elif quota.limit <= 0:
            return Verdict(quota, False, 0, quota.window_seconds)
        else:
            lease = self._new_lease(key, quota)
        if self._down_until > now:
            return self._failed_open(quota)
        async with lease.lock:  # one hit per key at a time; the others wait for its lease
            now = self._now()
            verdict = self._from_memory(lease, quota, now)
            if verdict is not None:
                return verdict
            try:
                return await self._lease(lease, key, quota, now)
            except _STORE_DOWN as error:
                return self._store_down(error, quota)

    def _from_memory(self, lease: _Lease, quota: Quota, now: float) -> Verdict | None:
        if lease.blocked_until > now:
            return Verdict(quota, False, 0, _seconds(lease.blocked_until - now, quota))
        if lease.units > 0 and lease.valid_until > now:
            lease.units -= 1
            reset = _seconds(lease.reset_at - now, quota)
            return Verdict(quota, True, lease.remaining + lease.units, reset)
        return None

    async def _lease(self, lease: _Lease, key: str, quota: Quota, now: float) -> Verdict:
        item = quota.item()
        size = max(1, min(self._max_lease, lease.estimate // 8))
        admitted = await self._strategy.hit(item, quota.name, key, cost=size)
        if not admitted and size > 1:
            size = 1
            admitted = await self._strategy.hit(item, quota.name, key)
        stats = await self._strategy.get_window_stats(item, quota.name, key)
        self._recovered()
        lease.remaining = lease.estimate = stats.remaining
        lease.reset_at = stats.reset_time
        reset = max(0.0, stats.reset_time - now)
        if not admitted:
            lease.units = 0
            lease.blocked_until = now + min(max(reset, 0.05), quota.window_seconds)
            return Verdict(quota, False, 0, _seconds(reset, quota))
        lease.units = size - 1
        lease.valid_until = now + min(self._lease_seconds, quota.window_seconds / 10)
        return Verdict(quota, True, lease.remaining + lease.units, _seconds(reset, quota))

    def _new_lease(self, key: str, quota: Quota) -> _Lease:
        lease = _Lease(estimate=quota.limit)
        while len(self._leases) >= self._max_keys:  # bounded: the oldest key goes, O(1)
            self._leases.popitem(last=False)
        self._leases[(key, quota)] = lease
        return lease

    def _store_down(self, error: BaseException, quota: Quota) -> Verdict:
        if self._down_until == 0.0:  # once per outage, not once per request
            log.warning("ratelimit.store_unavailable", error=repr(error), fail_open=True)
        self._down_until = self._now() + self._outage_seconds
        return self._failed_open(quota)

    def _failed_open(self, quota: Quota) -> Verdict:
        self.fail_opens += 1
        self._on_fail_open()
        return Verdict(quota, True, None, quota.window_seconds)

    def _recovered(self) -> None:
        if self._down_until:
            log.info("ratelimit.store_recovered")
            self._down_until = 0.0

    async def peek(self, key: str, quota: Quota) -> Verdict:
        """The window as the store sees it now (counts nothing): for operators."""
        try:
            stats = await self._strategy.get_window_stats(quota.item(), quota.name, key)
        except _STORE_DOWN as error:
            return self._store_down(error, quota)
        return Verdict(
            quota,
            stats.remaining > 0,
            stats.remaining,
            _seconds(stats.reset_time - self._now(), quota),
        )

    # -- exact operations (no lease): the login lockout ----------------------------------------

    async def count(self, key: str, quota: Quota) -> Verdict:
        """Count one attempt; refused when the window already holds `limit`."""

        async def hit(item: RateLimitItemPerSecond) -> Verdict:
            admitted = await self._strategy.hit(item, quota.name, key)
            stats = await self._strategy.get_window_stats(item, quota.name, key)
            return Verdict(
                quota, admitted, stats.remaining, _seconds(stats.reset_time - self._now(), quota)
            )

        return await self._exactly(quota, hit)

    async def check(self, key: str, quota: Quota) -> Verdict:
        """Would one more attempt be admitted? Counts nothing."""

        async def test(item: RateLimitItemPerSecond) -> Verdict:
            if await self._strategy.test(item, quota.name, key):
                return Verdict(quota, True, None, quota.window_seconds)
            stats = await self._strategy.get_window_stats(item, quota.name, key)
            return Verdict(quota, False, 0, _seconds(stats.reset_time - self._now(), quota))

        return await self._exactly(quota, test)

    async def _exactly(
        self, quota: Quota, ask: Callable[[RateLimitItemPerSecond], Awaitable[Verdict]]
    ) -> Verdict:
        if self._down_until > self._now():
            return self._failed_open(quota)
        try:
            verdict = await ask(quota.item())
        except _STORE_DOWN as error:
            return self._store_down(error, quota)
        self._recovered()
        return verdict

    async def clear(self, key: str, quota: Quota) -> None:
        try:
            await self._strategy.clear(quota.item(), quota.name, key)
        except _STORE_DOWN as error:
            self._store_down(error, quota)


def rate_limit_storage(redis_url: str | None, timeout_seconds: float) -> Storage:
    """`limits`' Redis storage on redis-py (async) when `redis.url` is set, else its memory
    storage. `implementation="redispy"` uses the redis-py this project already depends on;
    the `limits[redis]` extra (which pins redis-py below 8) is not installed: docs/decisions.md.
    """
    if redis_url is None:
        return MemoryStorage()
    return RedisStorage(
        f"async+{redis_url}",
        wrap_exceptions=True,
        implementation="redispy",
        key_prefix="storefront:rl",
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
    )


def rate_limiter(storage: Storage, settings: Any, on_fail_open: Callable[[], None]) -> RateLimiter:
    """The container's limiter: Redis leases batches; memory counts exactly (a hit is a dict
    update, nothing to save)."""
    shared = not isinstance(storage, MemoryStorage)
    return RateLimiter(
        storage,
        max_lease=settings.max_lease if shared else 1,
        lease_seconds=settings.lease_seconds,
        outage_seconds=settings.outage_seconds,
        on_fail_open=on_fail_open,
    )
