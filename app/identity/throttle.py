"""Brute-force protection for logins: attempts counted per account and per client IP in a fixed
window; past a limit every attempt (even a correct one) is refused until the window ends.

An attempt is counted *before* its password is verified (an atomic increment), so concurrent
guesses cannot all slip past the check while the first ones are still hashing; a success then
clears the account's counter and takes its attempt back from the IP's.

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
    async def hit(self, keys: list[str], window: int) -> list[tuple[int, float]]:
        """Count one attempt on each key (a key's window starts with its first attempt);
        returns (count, seconds until the window ends) per key, after counting."""
        ...

    async def reset(self, key: str) -> None: ...

    async def take_back(self, key: str) -> None:
        """Uncount one attempt, if the key's window still runs."""
        ...


class MemoryThrottleStore:
    """Fixed windows in a dict, timed by the container's clock (tests move it)."""

    def __init__(self, clock: Clock, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._windows: dict[str, tuple[int, float]] = {}  # key: (count, window end)

    async def hit(self, keys: list[str], window: int) -> list[tuple[int, float]]:
        now = self._clock.now().timestamp()
        if len(self._windows) >= self._max_entries:
            self._windows = {k: v for k, v in self._windows.items() if v[1] > now}
        result = []
        for key in keys:
            count, end = self._windows.get(key, (0, 0.0))
            count, end = (count + 1, end) if end > now else (1, now + window)
            self._windows[key] = (count, end)
            result.append((count, end - now))
        return result

    async def reset(self, key: str) -> None:
        self._windows.pop(key, None)

    async def take_back(self, key: str) -> None:
        count, end = self._windows.get(key, (0, 0.0))
        if count > 0 and end > self._clock.now().timestamp():
            self._windows[key] = (count - 1, end)


# DECR only while the key lives: a DECR on an expired key would create a counter with no TTL.
_TAKE_BACK = "if redis.call('exists', KEYS[1]) == 1 then return redis.call('decr', KEYS[1]) end"


class RedisThrottleStore:
    """INCR + EXPIRE NX in one transaction: the window is the key's TTL, kept by Redis."""

    def __init__(self, redis: Any) -> None:
        self._redis = redis
        self._take_back = redis.register_script(_TAKE_BACK)

    async def hit(self, keys: list[str], window: int) -> list[tuple[int, float]]:
        async with self._redis.pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.incr(key)
                pipe.expire(key, window, nx=True)
                pipe.pttl(key)
            replies = await pipe.execute()
        return [(int(replies[i]), max(replies[i + 2], 0) / 1000) for i in range(0, len(replies), 3)]

    async def reset(self, key: str) -> None:
        await self._redis.delete(key)

    async def take_back(self, key: str) -> None:
        await self._take_back(keys=[key])


class LoginThrottle:
    def __init__(self, store: ThrottleStore, settings: LockoutSettings) -> None:
        self._store = store
        self._settings = settings

    @staticmethod
    def _keys(email: str, ip: str) -> tuple[str, str]:
        # Hashed: the store never holds an email address.
        account = hashlib.sha256(email.encode()).hexdigest()[:32]
        return f"storefront:login:account:{account}", f"storefront:login:ip:{ip}"

    async def attempt(self, email: str, ip: str) -> None:
        """Count this attempt; refuse it (429) when it goes past a limit."""
        settings = self._settings
        limits = (settings.max_failures_per_account, settings.max_failures_per_ip)
        counts = await self._store.hit(list(self._keys(email, ip)), settings.window_seconds)
        waits = [left for (count, left), limit in zip(counts, limits, strict=True) if count > limit]
        if waits:
            raise LoginLocked(
                "too many failed logins; try again later", retry_after=max(1, math.ceil(max(waits)))
            )

    async def succeeded(self, email: str, ip: str) -> None:
        """A correct password: the account starts afresh; the IP keeps only its failures."""
        account, address = self._keys(email, ip)
        await self._store.reset(account)
        await self._store.take_back(address)


def throttle_store(redis: Any, clock: Clock) -> ThrottleStore:
    """Redis when configured (shared by every process), else this process's memory."""
    return RedisThrottleStore(redis) if redis is not None else MemoryThrottleStore(clock)


class ApiKeyAttemptsLimited(TooManyRequests):
    code = "auth.api_key_attempts"
    title = "Too many invalid API keys"


class ApiKeyThrottle:
    """Failed API-key lookups per client IP (`auth.api_key_failures_per_ip` in
    `auth.api_key_failure_window_seconds`), counted in the shared `ThrottleStore`. Past the
    limit, the IP's uncached keys are refused (429) before any lookup until the window ends.

    Only failures touch the store; the refusal itself is decided from this process's memory
    (the IP's window end, learnt from its failure count), so a check costs a dict lookup and a
    valid key from a blocked IP still works once cached. With several processes an attacker gets
    at most the limit plus one lookup per process per window.
    """

    def __init__(
        self, store: ThrottleStore, clock: Clock, max_failures: int, window_seconds: int
    ) -> None:
        self._store = store
        self._clock = clock
        self._max = max_failures
        self._window = window_seconds
        self._blocked: dict[str, float] = {}  # ip: window end (container clock)
        self._max_entries = 100_000

    def check(self, ip: str) -> None:
        until = self._blocked.get(ip)
        if until is None:
            return
        left = until - self._clock.now().timestamp()
        if left <= 0:
            del self._blocked[ip]
            return
        raise ApiKeyAttemptsLimited(
            "too many invalid API keys from this address; try again later",
            retry_after=max(1, math.ceil(left)),
        )

    async def failed(self, ip: str) -> None:
        [(count, left)] = await self._store.hit([f"storefront:api_key:ip:{ip}"], self._window)
        if count >= self._max:
            now = self._clock.now().timestamp()
            if len(self._blocked) >= self._max_entries:
                self._blocked = {k: v for k, v in self._blocked.items() if v > now}
                if len(self._blocked) >= self._max_entries:  # still full: the oldest goes
                    del self._blocked[next(iter(self._blocked))]
            self._blocked[ip] = now + left
