"""Rate limiting on the `limits` library's sliding-window counter, with quota leased in batches.

`limits` owns the algorithm and the storage (`RedisStorage` through its redis-py implementation
when `redis.url` is set: one Lua script per hit, atomic, shared by every process; its
`MemoryStorage` otherwise: per process). This module adds three things the library leaves to
its caller:

- **Leasing** (`acquire`). A Redis round trip per request costs more than the hot path can pay,
  so a process takes quota in batches: one `hit(cost=n)` counts n requests at once and the
  next n-1 requests are admitted from memory. n is what this process admitted per second since
  its last hit times half a lease's life, so a busy process refreshes a few times a second and
  an idle one takes one unit at a time; and at most an eighth of what the window still had at
  the last look (and `max_lease`), so it shrinks as the quota runs out and the last units go
  one at a time: what the processes hold unused when a quota runs out is a few units. A lease
  lapses after `lease_seconds` (at most a quarter of the window), so an idle process does not
  sit on quota; lapsed units stay spent (the library has no give-back), at most half a lease's
  life of the process's traffic. When half a lease is used, the next is taken in the
  background (and the leftover units stay good until it arrives), so requests do not queue
  behind the round trip; only consumption triggers it, so an idle key takes nothing more.
  `RateLimit`'s `r` is the window's remaining quota after the lease plus the lease's unused
  units: within one process it never increases within a window (other than by the sliding
  window freeing quota); across processes it can lag by what another process leased.
- **Refusals from memory.** Once a key is refused, the process refuses it without a round trip
  until the library's reset time (when the sliding window frees a unit).
- **Fail open.** A storage error (Redis down, slow past its timeout) admits the request with no
  verdict (`remaining=None`), counts `storefront_rate_limit_fail_open_total`, logs once per
  outage, and skips the storage for `outage_seconds` so requests do not each wait a timeout
  (requests that waited for a key's hit while the store failed fail open too).

`count`, `check` and `clear` are the exact (unleased) operations the login lockout uses.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.errors import StorageError

from app.core.tasks import TaskSet

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
        "pending",
        "remaining",
        "reset_at",
        "size",
        "taken",
        "taken_at",
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
        self.size = 0  # units the last hit took
        self.taken = 0  # requests admitted since the last hit (sizes the next lease by rate)
        self.taken_at = 0.0  # when the last hit was made
        # Set while a hit for this key is under way: everyone else waits for it (all woken at
        # once when it is done; a lock would hand over one waiter per loop iteration).
        self.pending: asyncio.Future[None] | None = None


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
        self._tasks = TaskSet()
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
            self._leases.move_to_end((key, quota))  # least recently used goes first
            verdict = self._from_memory(lease, quota, now)
            if verdict is not None:
                if verdict.allowed and self._running_low(lease, now):
                    lease.pending = asyncio.get_running_loop().create_future()
                    self._tasks.spawn(self._prefetch(lease, key, quota))
                return verdict
        elif quota.limit <= 0:
            return Verdict(quota, False, 0, quota.window_seconds)
        else:
            lease = self._new_lease(key, quota)
        while True:
            if self._down_until > now:  # also when the store failed while this one waited
                return self._failed_open(quota)
            if lease.pending is None:
                break
            await asyncio.shield(lease.pending)  # another request's hit, or the prefetch
            now = self._now()
            verdict = self._from_memory(lease, quota, now)
            if verdict is not None:
                return verdict
        lease.pending = asyncio.get_running_loop().create_future()
        lease.units = 0  # a lapsed lease's units stay spent: nobody takes them while this hits
        try:
            return await self._lease(lease, key, quota, now)
        except _STORE_DOWN as error:
            return self._store_down(error, quota)
        finally:
            self._settle(lease)

    @staticmethod
    def _settle(lease: _Lease) -> None:
        pending, lease.pending = lease.pending, None
        if pending is not None and not pending.done():
            pending.set_result(None)

    def _from_memory(self, lease: _Lease, quota: Quota, now: float) -> Verdict | None:
        if lease.blocked_until > now:
            return Verdict(quota, False, 0, _seconds(lease.blocked_until - now, quota))
        # Leased units are good until the lease lapses, and while the next lease is on its
        # way (a busy process must not queue behind its own refresh).
        if lease.units > 0 and (lease.valid_until > now or lease.pending is not None):
            lease.units -= 1
            lease.taken += 1
            reset = _seconds(lease.reset_at - now, quota)
            return Verdict(quota, True, lease.remaining + lease.units, reset)
        return None

    def _running_low(self, lease: _Lease, now: float) -> bool:
        """Half the lease spent: take the next one in the background, so requests do not
        queue behind the round trip when it runs out. Only consumption triggers it, so an idle
        key takes nothing more."""
        return (
            lease.pending is None
            and lease.size >= 4
            and lease.units <= lease.size // 2
            and self._down_until <= now
        )

    def _validity(self, quota: Quota) -> float:
        return min(self._lease_seconds, quota.window_seconds / 4)

    def _next_size(self, lease: _Lease, quota: Quota, now: float) -> int:
        """What this process admitted per second since the last hit, times half the lease's
        life (so a lease is used up, not left to lapse, and refreshed a few times a second),
        at most an eighth of what the window still has and `max_lease`, at least 1."""
        cap = max(1, min(self._max_lease, lease.estimate // 8))
        if lease.taken_at == 0.0:
            return 1  # no rate yet: one request's worth
        rate = lease.taken / max(now - lease.taken_at, 0.001)
        return max(1, min(cap, math.ceil(rate * self._validity(quota) / 2)))

    async def _prefetch(self, lease: _Lease, key: str, quota: Quota) -> None:
        """The next lease, added to what is left of this one. A refusal takes nothing: the
        request that finds the lease empty asks the store itself (and is refused there)."""
        try:
            size = await self._take(
                lease, key, quota, (self._next_size(lease, quota, self._now()),)
            )
            if size:
                lease.units += size
                self._granted(lease, quota, size, taken=0, now=self._now())
            else:
                lease.size = 0  # no more prefetches: the request that finds it empty asks
        except _STORE_DOWN as error:  # no request waits on it: the next one fails open
            self._mark_down(error)
        finally:
            self._settle(lease)

    async def close(self) -> None:
        """Stop background lease refreshes (before the loop closes); nobody waits on them."""
        await self._tasks.cancel_all()
        for lease in self._leases.values():  # a refresh cancelled before it ran
            self._settle(lease)

    async def _lease(self, lease: _Lease, key: str, quota: Quota, now: float) -> Verdict:
        size = self._next_size(lease, quota, now)
        size = await self._take(lease, key, quota, (size, 1) if size > 1 else (1,))
        reset = max(0.0, lease.reset_at - now)
        if not size:
            lease.units = lease.size = 0
            lease.blocked_until = now + min(max(reset, 0.05), quota.window_seconds)
            return Verdict(quota, False, 0, _seconds(reset, quota))
        lease.units = size - 1  # this request has the first unit
        self._granted(lease, quota, size, taken=1, now=now)
        return Verdict(quota, True, lease.remaining + lease.units, _seconds(reset, quota))

    async def _take(self, lease: _Lease, key: str, quota: Quota, sizes: tuple[int, ...]) -> int:
        """Hit the store for the first of `sizes` it admits (0: none was) and note the window's
        state on the lease."""
        item = quota.item()
        taken = 0
        for size in sizes:
            if await self._strategy.hit(item, quota.name, key, cost=size):
                taken = size
                break
        stats = await self._strategy.get_window_stats(item, quota.name, key)
        self._recovered()
        lease.remaining = lease.estimate = stats.remaining
        lease.reset_at = stats.reset_time
        return taken

    def _granted(self, lease: _Lease, quota: Quota, size: int, *, taken: int, now: float) -> None:
        lease.size, lease.taken, lease.taken_at = size, taken, now
        lease.valid_until = now + self._validity(quota)

    def _new_lease(self, key: str, quota: Quota) -> _Lease:
        lease = _Lease(estimate=quota.limit)
        while len(self._leases) >= self._max_keys:  # bounded: the oldest key goes, O(1)
            self._leases.popitem(last=False)
        self._leases[(key, quota)] = lease
        return lease

    def _store_down(self, error: BaseException, quota: Quota) -> Verdict:
        self._mark_down(error)
        return self._failed_open(quota)

    def _mark_down(self, error: BaseException) -> None:
        if self._down_until == 0.0:  # once per outage, not once per request
            log.warning("ratelimit.store_unavailable", error=repr(error), fail_open=True)
        self._down_until = self._now() + self._outage_seconds

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
        if self._down_until > self._now():
            return Verdict(quota, True, None, quota.window_seconds)
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

    async def clear(self, key: str, quota: Quota) -> bool:
        """Forget `key`'s window; False when the store is not answering (nothing cleared)."""
        if self._down_until > self._now():
            return False  # the store is not answering: do not wait a timeout for it
        try:
            await self._strategy.clear(quota.item(), quota.name, key)
        except _STORE_DOWN as error:
            self._store_down(error, quota)
            return False
        return True


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
    """The container's limiter; both storages lease (the library's memory storage costs about
    15 us per hit and window read: measured, docs/performance.md)."""
    return RateLimiter(
        storage,
        max_lease=settings.max_lease,
        lease_seconds=settings.lease_seconds,
        outage_seconds=settings.outage_seconds,
        on_fail_open=on_fail_open,
    )


async def rate_limiter_lifecycle(limiter: RateLimiter) -> AsyncIterator[RateLimiter]:
    """Resource: stops the limiter's background lease refreshes on shutdown."""
    try:
        yield limiter
    finally:
        await limiter.close()
