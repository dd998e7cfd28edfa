"""The rate limiter on the `limits` library's memory storage: leasing, refusals, failing open
(a storage that raises, standing in for Redis down; its own time moved by the test)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from limits.aio.storage import MemoryStorage
from limits.errors import StorageError

from app.ratelimit.limiter import Quota, RateLimiter

QUOTA = Quota("tenant", 100, 3600)


class DownStorage(MemoryStorage):
    """The library's storage with its sliding-window operations failing as a dead Redis does
    (wrap_exceptions=True); counts how often it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def acquire_sliding_window_entry(self, *args: Any, **kwargs: Any) -> bool:
        self.calls += 1
        raise StorageError(ConnectionRefusedError("connection refused"))

    async def get_sliding_window(self, *args: Any, **kwargs: Any) -> tuple[int, float, int, float]:
        self.calls += 1
        raise StorageError(ConnectionRefusedError("connection refused"))


class SlowStorage(MemoryStorage):
    """The library's storage answering after a round trip's pause (as Redis does), so that
    concurrent requests really overlap; `fail` makes it fail after the pause (a Redis past its
    timeout). Counts its round trips."""

    def __init__(self, delay: float = 0.002, fail: bool = False) -> None:
        super().__init__()
        self.delay, self.fail, self.calls = delay, fail, 0

    async def _round_trip(self) -> None:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise StorageError(TimeoutError("timed out"))

    async def acquire_sliding_window_entry(self, *args: Any, **kwargs: Any) -> bool:
        await self._round_trip()
        return await super().acquire_sliding_window_entry(*args, **kwargs)

    async def get_sliding_window(self, *args: Any, **kwargs: Any) -> tuple[int, float, int, float]:
        await self._round_trip()
        return await super().get_sliding_window(*args, **kwargs)


def _limiter(storage: MemoryStorage, **options: Any) -> RateLimiter:
    defaults: dict[str, Any] = {"max_lease": 50, "lease_seconds": 1.0, "outage_seconds": 2.0}
    return RateLimiter(storage, **{**defaults, **options})


def test_leased_quota_admits_at_most_the_limit_under_concurrency() -> None:
    limiter = _limiter(MemoryStorage())

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(limiter.acquire("tenant:a", QUOTA) for _ in range(500)))

    verdicts = asyncio.run(scenario())
    admitted = [v for v in verdicts if v.allowed]
    assert 90 <= len(admitted) <= 100
    assert all(v.remaining == 0 and v.reset_seconds >= 1 for v in verdicts if not v.allowed)


def test_remaining_never_increases_within_a_window() -> None:
    limiter = _limiter(MemoryStorage())

    async def scenario() -> list[int | None]:
        return [(await limiter.acquire("tenant:a", QUOTA)).remaining for _ in range(150)]

    remaining = asyncio.run(scenario())
    assert remaining == sorted(remaining, reverse=True)  # type: ignore[type-var]
    assert remaining[0] is not None
    assert remaining[0] < 100
    assert remaining[-1] == 0


def test_keys_and_quota_names_count_apart() -> None:
    limiter = _limiter(MemoryStorage(), max_lease=1)
    small = Quota("tenant", 1, 3600)

    async def scenario() -> list[bool]:
        return [
            (await limiter.acquire("tenant:a", small)).allowed,
            (await limiter.acquire("tenant:a", small)).allowed,
            (await limiter.acquire("tenant:b", small)).allowed,  # another key
            (await limiter.count("tenant:a", Quota("signup", 1, 3600))).allowed,  # another quota
        ]

    assert asyncio.run(scenario()) == [True, False, True, True]


def test_a_quota_of_zero_refuses_without_asking_the_store() -> None:
    storage = DownStorage()
    limiter = _limiter(storage)
    verdict = asyncio.run(limiter.acquire("tenant:a", Quota("tenant", 0, 60)))
    assert not verdict.allowed
    assert storage.calls == 0


def test_a_failing_store_fails_open_counted_and_is_skipped_for_the_outage() -> None:
    storage = DownStorage()
    clock = [1_000.0]
    opened: list[int] = []
    limiter = _limiter(
        storage, now=lambda: clock[0], outage_seconds=2.0, on_fail_open=lambda: opened.append(1)
    )

    async def scenario() -> None:
        first = await limiter.acquire("tenant:a", QUOTA)
        assert first.allowed
        assert first.remaining is None  # no verdict: no RateLimit header for it
        asked = storage.calls
        for _ in range(10):  # within the outage: admitted without asking the store
            assert (await limiter.acquire("tenant:a", QUOTA)).allowed
            assert (await limiter.count("ip", Quota("login-ip", 5, 60))).allowed
            assert (await limiter.check("ip", Quota("login-ip", 5, 60))).allowed
        assert storage.calls == asked
        clock[0] += 2.5  # the outage has passed: the store is asked again
        assert (await limiter.acquire("tenant:a", QUOTA)).allowed
        assert storage.calls > asked

    asyncio.run(scenario())
    assert len(opened) == 32
    assert limiter.fail_opens == 32


def test_overlapping_requests_share_leases_and_never_exceed_the_quota() -> None:
    """With round trips that take time, requests wait for the hit under way (or the
    background prefetch) instead of each asking the store."""
    storage = SlowStorage()
    limiter = _limiter(storage)

    async def client() -> list[Any]:
        verdicts = []
        for _ in range(20):
            verdicts.append(await limiter.acquire("tenant:a", QUOTA))
            await asyncio.sleep(0.001)  # the request's own work
        return verdicts

    async def scenario() -> list[list[Any]]:
        runs = await asyncio.gather(*(client() for _ in range(25)))  # 500 requests, quota 100
        await limiter.close()
        return runs

    runs = asyncio.run(scenario())
    admitted = sum(v.allowed for run in runs for v in run)
    assert 90 <= admitted <= 100, admitted
    assert storage.calls < 200  # two round trips per lease, not per request
    for run in runs:
        remaining = [v.remaining for v in run]
        assert remaining == sorted(remaining, reverse=True)  # type: ignore[type-var]


def test_a_trickle_does_not_lease_away_the_quota_it_does_not_use() -> None:
    """Leases follow the process's rate: one request every so often takes one unit, so a
    burst after a trickle still finds the rest of the quota."""
    clock = [1_000.0]
    limiter = _limiter(MemoryStorage(), now=lambda: clock[0])
    quota = Quota("tenant", 100, 3600)

    async def scenario() -> int:
        for _ in range(10):
            assert (await limiter.acquire("tenant:a", quota)).allowed
            clock[0] += 2.0  # past the lease's life: unused units would lapse
        burst = [await limiter.acquire("tenant:a", quota) for _ in range(200)]
        return sum(v.allowed for v in burst)

    assert asyncio.run(scenario()) >= 85


def test_requests_waiting_on_a_failing_store_fail_open_after_one_timeout() -> None:
    """A store that times out: the first request waits its timeout, the ones that queued
    behind it do not each wait another."""
    storage = SlowStorage(delay=0.05, fail=True)
    limiter = _limiter(storage)

    async def scenario() -> list[Any]:
        return await asyncio.gather(*(limiter.acquire("tenant:a", QUOTA) for _ in range(12)))

    verdicts = asyncio.run(scenario())
    assert all(v.allowed and v.remaining is None for v in verdicts)
    assert storage.calls == 1


def test_the_ratelimit_header_is_what_http_sfv_writes() -> None:
    """The edge writes `RateLimit` members itself (app/http/ratelimit.py, the hot path): the
    bytes must be http_sfv's for every value, the fallback's included."""
    from http_sfv.item import Item
    from http_sfv.list import List

    from app.http.ratelimit import response_headers
    from app.ratelimit.limiter import Verdict

    cases = [(0, 0), (42, 17), (999_999_999_999_999, 60), (-1, 5), (10**15, 2**40)]
    for name in ("tenant", "api_key", 'we"ird\\name'):
        quota = Quota(name, 100, 60)
        for remaining, reset in cases:
            verdicts = [Verdict(quota, True, remaining, reset), Verdict(quota, True, None, 1)]
            expected = List()
            item = Item(name)
            item.params["r"], item.params["t"] = remaining, reset
            expected.append(item)
            try:
                wanted = str(expected).encode()
            except ValueError:  # out of the sf-integer range: both must refuse
                with pytest.raises(ValueError, match="out of Integer range"):
                    response_headers(verdicts)
                continue
            assert dict(response_headers(verdicts))[b"ratelimit"] == wanted
