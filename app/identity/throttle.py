"""Brute-force protection for logins: failures counted per account and per client IP in a fixed
window; past a limit every attempt (even a correct one) is refused until the window ends.

The counters live in a `ThrottleStore`: Redis when `redis.url` is set (shared by every process),
in-process memory otherwise (per process: the limit then applies per process).
"""

from __future__ import annotations

import hashlib
import math
from typing import Any, Protocol

from app.core.clock import Clock
from app.core.errors import TooManyRequests
from app.settings import LockoutSettings


class LoginLocked(TooManyRequests):
    code = "auth.too_many_attempts"
    title = "Too many failed logins"


class ThrottleStore(Protocol):
    async def get(self, keys: list[str]) -> list[tuple[int, float]]:
        """(failures, seconds until the window ends) per key; (0, 0) when none."""
        ...

    async def hit(self, keys: list[str], window: int) -> None:
        """Count one failure on each key; a key's window starts with its first failure."""
        ...

    async def reset(self, key: str) -> None: ...


class MemoryThrottleStore:
    """Fixed windows in a dict, timed by the container's clock (tests move it)."""

    def __init__(self, clock: Clock, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._windows: dict[str, tuple[int, float]] = {}  # key: (count, window end)

    async def get(self, keys: list[str]) -> list[tuple[int, float]]:
        now = self._clock.now().timestamp()
        result = []
        for key in keys:
            count, end = self._windows.get(key, (0, 0.0))
            result.append((count, end - now) if end > now else (0, 0.0))
        return result

    async def hit(self, keys: list[str], window: int) -> None:
        now = self._clock.now().timestamp()
        if len(self._windows) >= self._max_entries:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        for key in keys:
            count, end = self._windows.get(key, (0, 0.0))
            self._windows[key] = (count + 1, end) if end > now else (1, now + window)

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)


class RedisThrottleStore:
    """INCR + EXPIRE NX: the window is the key's TTL, kept by the Redis server."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis

    async def get(self, keys: list[str]) -> list[tuple[int, float]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            replies = await pipe.execute()
        result = []
        for value, ttl in zip(replies[::2], replies[1::2], strict=True):
            result.append((int(value), ttl / 1000) if value is not None and ttl > 0 else (0, 0.0))
        return result

    async def hit(self, keys: list[str], window: int) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, window, nx=True)
            await pipe.execute()

    async def reset(self, key: str) -> None:
        await self._redis.delete(key)


class LoginThrottle:
    def __init__(self, store: ThrottleStore, settings: LockoutSettings) -> None:
        self._store = store
        self._settings = settings

    @staticmethod
    def _keys(email: str, ip: str) -> list[str]:
        # Hashed: the store never holds an email address.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        return [f"storefront:login:account:{account}", f"storefront:login:ip:{ip}"]

    async def check(self, email: str, ip: str) -> None:
        limits = (self._settings.max_failures_per_account, self._settings.max_failures_per_ip)
        counts = await self._store.get(self._keys(email, ip))
        waits = [
            left for (count, left), limit in zip(counts, limits, strict=True) if count >= limit
        ]
        if waits:
            raise LoginLocked(
                "too many failed logins; try again later", retry_after=math.ceil(max(waits))
            )

    async def failed(self, email: str, ip: str) -> None:
        await self._store.hit(self._keys(email, ip), self._settings.window_seconds)

    async def succeeded(self, email: str) -> None:
        await self._store.reset(self._keys(email, "")[0])


def throttle_store(redis: Any, clock: Clock) -> ThrottleStore:
    """Redis when configured (shared by every process), else this process's memory."""
    return RedisThrottleStore(redis) if redis is not None else MemoryThrottleStore(clock)
