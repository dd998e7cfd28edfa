"""Brute-force protection for logins and API keys, on the one rate limiter
(`app.ratelimit.RateLimiter`: the `limits` library's sliding-window counter, in Redis when
`redis.url` is set and so shared by every process, in process memory otherwise).

Only failures count: a wrong password counts once on each candidate account and on the client
address; a success clears the account that logged in and costs nobody anything. So that
concurrent guesses cannot all slip past the check while the first ones are still hashing, a
process runs one attempt per account at a time (`serialized`: check, verify, count); across N
processes at most N - 1 guesses beyond the limit can be in flight (docs/decisions.md).

Past a limit every attempt (even a correct one) is refused until the sliding window frees a
unit: the lockout lifts gradually as the window slides.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

from app.core.clock import Clock
from app.core.errors import TooManyRequests
from app.ratelimit.limiter import Quota, RateLimiter
from app.settings import LockoutSettings


class LoginLocked(TooManyRequests):
    code = "auth.too_many_attempts"
    title = "Too many failed logins"


class _KeyedLocks:
    """One asyncio.Lock per key, kept only while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, keys: Iterable[str]) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            for key in sorted(set(keys)):  # one order for everyone: no deadlock
                lock, users = self._locks.get(key, (asyncio.Lock(), 0))
                self._locks[key] = (lock, users + 1)
                stack.callback(self._release, key)
                await stack.enter_async_context(lock)
            yield

    def _release(self, key: str) -> None:
        lock, users = self._locks[key]
        if users == 1:
            del self._locks[key]
        else:
            self._locks[key] = (lock, users - 1)


class LoginThrottle:
    """`attempt_from` refuses a client address over its limit before the credentials lookup
    (no database read); `serialized` + `check` refuse a locked account before its password is
    verified; `failed` / `succeeded` record the outcome inside `serialized`."""

    def __init__(self, limiter: RateLimiter, settings: LockoutSettings) -> None:
        self._limiter = limiter
        window = settings.window_seconds
        self._per_account = Quota("login-account", settings.max_failures_per_account, window)
        self._per_ip = Quota("login-ip", settings.max_failures_per_ip, window)
        self._in_flight = _KeyedLocks()

    @staticmethod
    def _account_key(account: str) -> str:
        # Hashed: the store never holds an email address.
        return hashlib.sha256(account.encode()).hexdigest()[:32]

    async def attempt_from(self, ip: str) -> None:
        """Refuse (429) an attempt from an address whose failures fill its window."""
        verdict = await self._limiter.check(ip, self._per_ip)
        if not verdict.allowed:
            raise LoginLocked(
                "too many failed logins; try again later", retry_after=verdict.reset_seconds
            )

    def serialized(self, accounts: Iterable[str]) -> AbstractAsyncContextManager[None]:
        """This process's attempts at any of `accounts` run one at a time."""
        return self._in_flight.hold(accounts)

    async def check(self, accounts: Iterable[str]) -> None:
        """Refuse (429) when any account's failures fill its window."""
        waits = []
        for account in accounts:
            verdict = await self._limiter.check(self._account_key(account), self._per_account)
            if not verdict.allowed:
                waits.append(verdict.reset_seconds)
        if waits:
            raise LoginLocked("too many failed logins; try again later", retry_after=max(waits))

    async def failed(self, ip: str, accounts: Iterable[str]) -> None:
        """A wrong password (or no such account): one failure on each account and the address."""
        for account in accounts:
            await self._limiter.count(self._account_key(account), self._per_account)
        await self._limiter.count(ip, self._per_ip)

    async def succeeded(self, account: str) -> None:
        """A correct password: the account starts afresh (the other candidates of a tenant-less
        login keep their failures: a success on one's own account clears nobody else's)."""
        await self._limiter.clear(self._account_key(account), self._per_account)


class ApiKeyAttemptsLimited(TooManyRequests):
    code = "auth.api_key_attempts"
    title = "Too many invalid API keys"


class ApiKeyThrottle:
    """Failed API-key lookups per client IP (`auth.api_key_failures_per_ip` in
    `auth.api_key_failure_window_seconds`), counted on the shared rate limiter. Past the
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
        self, limiter: RateLimiter, clock: Clock, max_failures: int, window_seconds: int
    ) -> None:
        self._limiter = limiter
        self._clock = clock
        self._quota = Quota("api-key-failures", max_failures, window_seconds)
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
        verdict = await self._limiter.count(ip, self._quota)
        if not verdict.allowed or verdict.remaining == 0:
            self._blocked.pop(ip, None)
            while len(self._blocked) >= self._max_entries:  # full: the oldest goes, O(1)
                self._blocked.popitem(last=False)
            self._blocked[ip] = self._clock.now().timestamp() + verdict.reset_seconds
