"""Brute-force protection (lockout per account and per IP, in memory and in Redis) and the
timing of failed logins."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import redis.asyncio as aioredis

from app.identity.repository import UserRepository
from tests.api.identity_helpers import PASSWORD, log_in, sign_up
from tests.conftest import OPERATOR_TOKEN, Harness, at_window_start, problem

EMAIL = "owner@acme.example"


async def _attempt(harness: Harness, password: str, email: str = EMAIL) -> Any:
    return await harness.client.post(
        "/v1/auth/token", data={"username": email, "password": password}
    )


async def _lock_out(harness: Harness, failures: int = 5) -> Any:
    for _ in range(failures):
        assert (await _attempt(harness, "wrong-password-123")).status_code == 401
    locked = await _attempt(harness, "wrong-password-123")
    assert locked.status_code == 429, locked.text
    assert problem(locked)["code"] == "auth.too_many_attempts"
    return locked


async def test_sixth_failure_locks_the_account_until_the_window_frees_it(
    make_harness: Any,
) -> None:
    # The lockout counts on the rate limiter, in real time: a short window, and real waiting.
    harness = await make_harness(auth={"lockout": {"window_seconds": 2}})
    await sign_up(harness.client, "acme")
    await at_window_start(2)
    locked = await _lock_out(harness)
    retry_after = int(locked.headers["retry-after"])
    assert 1 <= retry_after <= 2
    # The right password is refused too while locked.
    refused = await _attempt(harness, PASSWORD)
    assert refused.status_code == 429
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert 'storefront_auth_events_total{event="login_failed"} 5.0' in metrics.text
    assert 'storefront_auth_events_total{event="login_locked"} 2.0' in metrics.text
    await asyncio.sleep(retry_after)  # Retry-After is honest: then one attempt is admitted
    await log_in(harness.client, EMAIL)


async def test_a_success_clears_the_account_count(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    for _ in range(4):
        assert (await _attempt(harness, "wrong-password-123")).status_code == 401
    await log_in(harness.client, EMAIL)
    for _ in range(4):
        assert (await _attempt(harness, "wrong-password-123")).status_code == 401
    await log_in(harness.client, EMAIL)


async def test_failures_per_ip_lock_every_account_from_it(make_harness: Any) -> None:
    harness = await make_harness(
        auth={"lockout": {"max_failures_per_ip": 3, "max_failures_per_account": 100}}
    )
    await sign_up(harness.client, "acme")
    for n in range(3):  # spraying one password over many accounts
        assert (await _attempt(harness, "wrong-password-123", f"u{n}@x.example")).status_code == 401
    response = await _attempt(harness, PASSWORD)
    assert response.status_code == 429


async def test_an_address_over_its_limit_is_refused_before_any_lookup(
    make_harness: Any, monkeypatch: Any
) -> None:
    """Once the client address is over its limit, refused attempts cost no database read."""
    harness = await make_harness(
        auth={"lockout": {"max_failures_per_ip": 3, "max_failures_per_account": 100}}
    )
    await sign_up(harness.client, "acme")
    for n in range(3):
        assert (await _attempt(harness, "wrong-password-123", f"u{n}@x.example")).status_code == 401
    lookups = 0
    original = UserRepository.credentials

    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        nonlocal lookups
        lookups += 1
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(UserRepository, "credentials", counted)
    for _ in range(5):
        refused = await _attempt(harness, PASSWORD)
        assert refused.status_code == 429, refused.text
        assert problem(refused)["code"] == "auth.too_many_attempts"
    assert lookups == 0


async def test_lockout_in_redis_is_shared_by_processes(make_harness: Any, redis_url: str) -> None:
    settings = {"redis": {"url": redis_url}, "auth": {"lockout": {"window_seconds": 2}}}
    first: Harness = await make_harness(**settings)
    second: Harness = await make_harness(**settings)  # another process of the same service
    await sign_up(first.client, "acme")
    await at_window_start(2)
    locked = await _lock_out(first)
    retry_after = int(locked.headers["retry-after"])
    assert retry_after in (1, 2)
    assert (await _attempt(second, PASSWORD)).status_code == 429
    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key.decode() for key in await client.keys("storefront:rl:*login-account*")]
    finally:
        await client.aclose()
    assert keys
    assert not any("acme" in key for key in keys)  # no email address in Redis
    await asyncio.sleep(retry_after)  # Redis keeps the window: real time has to pass
    await log_in(second.client, EMAIL)


async def test_unknown_user_costs_as_much_as_a_wrong_password(make_harness: Any) -> None:
    """Median latency of the two failures, compared with each other (not with a number):
    production hashing parameters, so the hash dominates as it does in production."""
    harness = await make_harness(
        auth={
            "password": {"argon2_memory_kib": 19456, "argon2_time_cost": 2},
            "lockout": {"max_failures_per_account": 10_000, "max_failures_per_ip": 10_000},
        }
    )
    await sign_up(harness.client, "acme")
    for _ in range(3):  # warm up: connections, code paths
        await _attempt(harness, "wrong-password-123")
        await _attempt(harness, "wrong-password-123", "nobody@acme.example")
    wrong, unknown = [], []
    for _ in range(30):  # interleaved, so drifts of the machine hit both alike
        for email, samples in ((EMAIL, wrong), ("nobody@acme.example", unknown)):
            started = time.perf_counter()
            response = await _attempt(harness, "wrong-password-123", email)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 401
    ratio = statistics.median(unknown) / statistics.median(wrong)
    assert 0.7 <= ratio <= 1.4, f"unknown/wrong median ratio {ratio:.2f}"


async def test_concurrent_guesses_cannot_outrun_the_lockout(make_harness: Any) -> None:
    """Attempts are counted before the (slow) password check: 30 guesses at once get at most
    5 verdicts on the password, the rest 429."""
    harness = await make_harness(auth={"password": {"argon2_memory_kib": 19456}})
    await sign_up(harness.client, "acme")
    responses = await asyncio.gather(
        *(_attempt(harness, f"wrong-password-{n:03}") for n in range(30))
    )
    statuses = [r.status_code for r in responses]
    assert statuses.count(401) == 5, statuses
    assert statuses.count(429) == 25


async def test_successes_do_not_count_against_the_ip(make_harness: Any) -> None:
    harness = await make_harness(auth={"lockout": {"max_failures_per_ip": 3}})
    await sign_up(harness.client, "acme")
    for _ in range(5):
        await log_in(harness.client, EMAIL)
