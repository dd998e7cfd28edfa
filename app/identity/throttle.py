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
from collections import OrderedDict
from collections.abc import Iterable
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
    """Fixed windows in an insertion-ordered dict, timed by the container's clock (tests move
    it), bounded by `max_entries`; every operation is O(1) amortised.

    A key enters at the end when its window starts (a hit on a live window updates it in
    place), so the front holds the oldest windows. When full, a sweep drops expired windows,
    but at most once per `max_entries // 2` new keys (its O(n) is spread over them); what the
    sweep cannot free is made by evicting the oldest windows (`popitem(last=False)`, O(1)).

    Eviction means a flood of fresh keys (one per spoofed address or guessed email) can push
    a live window out and so reset its count: the memory store bounds memory, not attackers.
    Production deployments with more than a trickle of traffic set `redis.url`, whose store
    keeps every window for its TTL (and shares it between processes).
    """

    def __init__(self, clock: Clock, max_entries: int = 100_000) -> None:
        self._clock = clock
        self._max_entries = max_entries
        self._windows: OrderedDict[str, tuple[int, float]] = OrderedDict()  # (count, end)
        self._new_since_sweep = 0
        self.sweeps = 0  # O(n) passes so far (tests check they stay rare)

    def __len__(self) -> int:
        return len(self._windows)

    async def hit(self, keys: list[str], window: int) -> list[tuple[int, float]]:
        now = self._clock.now().timestamp()
        windows = self._windows
        result = []
        for key in keys:
            count, end = windows.get(key, (0, 0.0))
            if end > now:
                count += 1
                windows[key] = (count, end)  # in place: its window started earlier
            else:
                count, end = 1, now + window
                windows.pop(key, None)
                self._make_room(now)
                windows[key] = (count, end)  # a new window: at the end
                self._new_since_sweep += 1
            result.append((count, end - now))
        return result

    def _make_room(self, now: float) -> None:
        windows = self._windows
        if len(windows) < self._max_entries:
            return
        if self._new_since_sweep >= self._max_entries // 2:
            self._new_since_sweep = 0
            self.sweeps += 1
            for key in [k for k, (_, end) in windows.items() if end <= now]:
                del windows[key]
        while len(windows) >= self._max_entries:
            windows.popitem(last=False)

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
    """Two steps, so a client address over its limit costs no database read: `attempt_from`
    (the address, before the credentials lookup), then `attempt` (the accounts the lookup
    found). Both count before any password is verified."""

    def __init__(self, store: ThrottleStore, settings: LockoutSettings) -> None:
        self._store = store
        self._settings = settings

    @staticmethod
    def _account_key(account: str) -> str:
        # Hashed: the store never holds an email address.
        return f"storefront:login:account:{hashlib.sha256(account.encode()).hexdigest()[:32]}"

    @staticmethod
    def _ip_key(ip: str) -> str:
        return f"storefront:login:ip:{ip}"

    async def attempt_from(self, ip: str) -> None:
        """Count this attempt on the client address; refuse it (429) past the limit."""
        [(count, left)] = await self._store.hit([self._ip_key(ip)], self._settings.window_seconds)
        if count > self._settings.max_failures_per_ip:
            raise LoginLocked(
                "too many failed logins; try again later", retry_after=max(1, math.ceil(left))
            )

    async def attempt(self, accounts: Iterable[str]) -> None:
        """Count this attempt on each account; refuse it (429) when any goes past the limit."""
        keys = [self._account_key(account) for account in accounts]
        counts = await self._store.hit(keys, self._settings.window_seconds)
        limit = self._settings.max_failures_per_account
        waits = [left for count, left in counts if count > limit]
        if waits:
            raise LoginLocked(
                "too many failed logins; try again later", retry_after=max(1, math.ceil(max(waits)))
            )

    async def succeeded(self, account: str, ip: str, others: Iterable[str] = ()) -> None:
        """A correct password: the account starts afresh; the IP and the other candidate
        accounts get this attempt back (they keep their failures: a success on one's own
        account must not clear someone else's count)."""
        await self._store.reset(self._account_key(account))
        await self._store.take_back(self._ip_key(ip))
        for other in others:
            await self._store.take_back(self._account_key(other))


def throttle_store(redis: Any, clock: Clock) -> ThrottleStore:
    """Redis when configured (shared by every process), else this process's memory."""
    return RedisThrottleStore(redis) if redis is not None else MemoryThrottleStore(clock)


class ApiKeyAttemptsLimited(TooManyRequests):
    code = "auth.api_key_attempts"
    title = "Too many invalid API keys"


class ApiKeyThrottle:
    """Failed API-key lookups per client IP (`auth.api_key_failures_per_ip` in
    `auth.api_key_failure_window_seconds`), counted in the shared `ThrottleStore`. Past the
    limit, the IP's uncached keys are refused (429) before any lookup until the window ends,
    except keys this process authenticated lately (`CredentialCache.recent_api_keys`, 1 h):
    a valid key in use behind the same NAT address keeps working while guesses are refused.
    A valid key never seen by this process stays refused from that address until the window
    passes (it cannot be told from a guess without the lookup the limit exists to save).

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
        # ip: window end (container clock); one window length, so the front ends first
        self._blocked: OrderedDict[str, float] = OrderedDict()
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
            self._blocked.pop(ip, None)
            while len(self._blocked) >= self._max_entries:  # full: the oldest goes, O(1)
                self._blocked.popitem(last=False)
            self._blocked[ip] = self._clock.now().timestamp() + left
