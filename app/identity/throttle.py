"""Brute-force protection for logins and API keys, on the one rate limiter
(`app.ratelimit.RateLimiter`: the `limits` library's sliding-window counter, in Redis when
`redis.url` is set and so shared by every process, in process memory otherwise).

Only failures count: a wrong password counts once on each candidate account and on the client
address; a success clears the account that logged in and costs nobody anything. So that
concurrent guesses cannot all pass the check while the first ones are still hashing, each
attempt reserves one of its accounts' remaining attempts in this process before its password
is verified (`reserve`, given back by `release`): at the limit the next one is refused at
once instead of waiting. Across N processes at most N x the remaining attempts can be in
flight together (docs/decisions.md).

Past a limit every attempt (even a correct one) is refused until the sliding window frees a
unit: the lockout lifts gradually as the window slides.
"""

from __future__ import annotations

import hashlib
import math
from collections import OrderedDict
from collections.abc import Iterable

from app.core.clock import Clock
from app.core.errors import TooManyRequests
from app.ratelimit.errors import StoreUnavailable
from app.ratelimit.limiter import Quota, RateLimiter
from app.settings import LockoutSettings


class LoginLocked(TooManyRequests):
    code = "auth.too_many_attempts"
    title = "Too many failed logins"


class LoginThrottle:
    """`attempt_from` refuses a client address over its limit before the credentials lookup
    (no database read); `reserve` refuses a locked account, or one whose remaining attempts
    are all being verified right now, before its password is verified; `failed` /
    `succeeded` record the outcome, `release` gives the reservation back."""

    def __init__(self, limiter: RateLimiter, settings: LockoutSettings) -> None:
        self._limiter = limiter
        window = settings.window_seconds
        self._per_account = Quota("login-account", settings.max_failures_per_account, window)
        self._per_ip = Quota("login-ip", settings.max_failures_per_ip, window)
        # account key -> attempts of this process being verified now (no entry: none)
        self._in_flight: dict[str, int] = {}

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

    async def reserve(self, accounts: Iterable[str]) -> None:
        """Take one of each account's remaining attempts for this attempt, or refuse it (429)
        when an account has none left: its failures fill the window, or the attempts already
        being verified would fill it. Call `release` with the same accounts afterwards."""
        keys = list(dict.fromkeys(self._account_key(account) for account in accounts))
        # Places in the queue are taken before any await, so concurrent attempts cannot all
        # see the same count.
        places = []
        for key in keys:
            self._in_flight[key] = place = self._in_flight.get(key, 0) + 1
            places.append(place)
        try:
            waits = []
            for key, place in zip(keys, places, strict=True):
                verdict = await self._limiter.peek(key, self._per_account)
                if verdict.remaining is not None and place > verdict.remaining:
                    waits.append(verdict.reset_seconds)
            if waits:
                raise LoginLocked("too many failed logins; try again later", retry_after=max(waits))
        except BaseException:
            self._give_back(keys)
            raise

    def release(self, accounts: Iterable[str]) -> None:
        self._give_back(list(dict.fromkeys(self._account_key(a) for a in accounts)))

    def _give_back(self, keys: list[str]) -> None:
        for key in keys:
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)

    async def failed(self, ip: str, accounts: Iterable[str]) -> None:
        """A wrong password (or no such account): one failure on each account and the address."""
        for account in accounts:
            await self._limiter.count(self._account_key(account), self._per_account)
        await self._limiter.count(ip, self._per_ip)

    @property
    def shared(self) -> bool:
        """True when the counts live in Redis, so any process (the CLI) can clear them."""
        return self._limiter.shared

    async def clear(self, accounts: Iterable[str], ips: Iterable[str]) -> None:
        """An operator's unlock: these accounts' and client addresses' failures are forgotten
        (StoreUnavailable when the store does not answer)."""
        keys = [(self._account_key(a), self._per_account) for a in accounts]
        for key, quota in [*keys, *((ip, self._per_ip) for ip in ips)]:
            if not await self._limiter.clear(key, quota):
                raise StoreUnavailable("the rate limiter's store (redis.url) is not answering")

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
    valid key from a blocked IP still works once cached. Lookups already in flight when the
    limit is reached still finish: an attacker gets the limit plus the lookups it had in flight
    (at most the request door's size, `server.max_concurrent_requests`) per process per window.
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
