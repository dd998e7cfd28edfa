"""Issue 8, finding 5: sign-up and user creation reveal nothing about other tenants' addresses
(emails are unique per tenant), login picks the account with an optional `tenant` field, and
sign-up attempts are limited per client address (in memory, and shared through Redis)."""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx

from tests.api.identity_helpers import PASSWORD, bearer, sign_up
from tests.conftest import Harness, StorefrontClient, at_window_start, problem

SHARED = "shared@example.com"
TWICE = "twice@example.com"
VICTIM = "victim@example.com"
FRESH = "fresh@example.com"
OTHER_PASSWORD = "another-horse-battery"
THIRD_PASSWORD = "a-third-horse-battery"


def _signup_body(slug: str, email: str | None = None, password: str = PASSWORD) -> dict[str, Any]:
    return {
        "name": slug.title(),
        "slug": slug,
        "owner": {"email": email or f"owner@{slug}.example", "password": password},
    }


@asynccontextmanager
async def _client_from(harness: Harness, address: str) -> AsyncIterator[httpx.AsyncClient]:
    """A client whose connections come from `address` (the peer the app sees)."""
    transport = httpx.ASGITransport(app=harness.app, client=(address, 40000))
    async with StorefrontClient(transport=transport, base_url="http://testserver") as client:
        yield client


async def _token(
    client: httpx.AsyncClient, email: str, password: str, tenant: str | None = None
) -> httpx.Response:
    form = {"username": email, "password": password}
    if tenant is not None:
        form["tenant"] = tenant
    return await client.post("/v1/auth/token", data=form)


def _comparable(response: httpx.Response) -> tuple[int, dict[str, Any], str | None]:
    body = {k: v for k, v in problem(response).items() if k not in ("request_id", "instance")}
    return response.status_code, body, response.headers.get("www-authenticate")


async def test_sign_up_is_limited_per_client_address(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(
        # The limit counts on the rate limiter, in real time: a short window, and real waiting.
        auth={"signup_limit": {"max_per_ip": 3, "window_seconds": 2}}
    )
    client = harness.client
    await at_window_start(2)
    assert (await client.post("/v1/tenants", json=_signup_body("acme"))).status_code == 201
    assert (await client.post("/v1/tenants", json=_signup_body("globex"))).status_code == 201
    # Refused attempts count too: each one is a probe.
    taken = await client.post("/v1/tenants", json=_signup_body("acme", "x@y.example"))
    assert taken.status_code == 409

    limited = await client.post("/v1/tenants", json=_signup_body("initech"))
    assert limited.status_code == 429, limited.text
    assert limited.headers["content-type"].startswith("application/problem+json")
    assert problem(limited)["code"] == "tenant.signup_limited"
    retry_after = int(limited.headers["retry-after"])
    assert 1 <= retry_after <= 2
    assert (await client.post("/v1/tenants", json=_signup_body("initech"))).status_code == 429

    async with _client_from(harness, "198.51.100.20") as elsewhere:  # per address
        assert (
            await elsewhere.post("/v1/tenants", json=_signup_body("initech"))
        ).status_code == 201

    await asyncio.sleep(retry_after)  # Retry-After is honest: then one attempt is admitted
    assert (await client.post("/v1/tenants", json=_signup_body("hooli"))).status_code == 201


async def test_the_sign_up_limit_in_redis_is_shared_by_processes(
    make_harness: Callable[..., Any], redis_url: str
) -> None:
    settings = {"redis": {"url": redis_url}, "auth": {"signup_limit": {"max_per_ip": 2}}}
    first: Harness = await make_harness(**settings)
    second: Harness = await make_harness(**settings)  # another process of the same service
    address = "203.0.113.7"
    async with _client_from(first, address) as one, _client_from(second, address) as two:
        assert (await one.post("/v1/tenants", json=_signup_body("acme"))).status_code == 201
        assert (await two.post("/v1/tenants", json=_signup_body("globex"))).status_code == 201
        for client in (one, two):
            limited = await client.post("/v1/tenants", json=_signup_body("initech"))
            assert limited.status_code == 429, limited.text
            assert problem(limited)["code"] == "tenant.signup_limited"
            assert int(limited.headers["retry-after"]) > 0


async def test_another_tenants_email_is_no_obstacle_anywhere(harness: Harness) -> None:
    client = harness.client
    await sign_up(client, "acme")
    await sign_up(client, "globex")
    # Sign-up with an address already registered in another tenant: a new tenant, 201.
    again = await client.post("/v1/tenants", json=_signup_body("initech", "OWNER@acme.example"))
    assert again.status_code == 201, again.text
    assert again.json()["owner"]["email"] == "owner@acme.example"

    # An admin adding users learns nothing about other tenants: their address and a brand-new
    # one get the same answer.
    acme = bearer((await _token(client, "owner@acme.example", PASSWORD, "acme")).json())
    answers = []
    for email in ("owner@globex.example", "nobody-yet@example.com"):
        response = await client.post(
            "/v1/users", json={"email": email, "password": PASSWORD}, headers=acme
        )
        answers.append((response.status_code, sorted(response.json())))
    assert answers[0] == answers[1]
    assert answers[0][0] == 201
    # The same tenant's own address is still taken.
    duplicate = await client.post(
        "/v1/users", json={"email": "Owner@Globex.example", "password": PASSWORD}, headers=acme
    )
    assert duplicate.status_code == 409
    assert problem(duplicate)["code"] == "user.email_taken"


async def test_login_picks_the_tenant_and_an_ambiguous_email_fails_like_a_wrong_password(
    harness: Harness,
) -> None:
    client = harness.client
    await client.post("/v1/tenants", json=_signup_body("acme", SHARED))
    await client.post("/v1/tenants", json=_signup_body("globex", SHARED, OTHER_PASSWORD))
    await client.post("/v1/tenants", json=_signup_body("hooli", SHARED, THIRD_PASSWORD))
    await sign_up(client, "initech")

    # With `tenant` the account is named; without it, the password picks one of the email's
    # two oldest accounts (acme, globex).
    for slug, password, tenant in (
        ("acme", PASSWORD, "acme"),
        ("globex", OTHER_PASSWORD, "globex"),
        ("hooli", THIRD_PASSWORD, "hooli"),
        ("acme", PASSWORD, None),
        ("globex", OTHER_PASSWORD, None),
    ):
        response = await _token(client, SHARED.upper(), password, tenant=tenant)
        assert response.status_code == 200, response.text
        me = await client.get("/v1/me", headers=bearer(response.json()))
        assert me.json()["tenant"]["slug"] == slug
        assert me.json()["email"] == SHARED

    # Two accounts with one password: which one? The same 401 as a wrong password.
    await client.post("/v1/tenants", json=_signup_body("twin-a", TWICE))
    await client.post("/v1/tenants", json=_signup_body("twin-b", TWICE))
    wrong = await _token(client, "owner@initech.example", "wrong-password-123")
    assert problem(wrong)["code"] == "auth.invalid_credentials"
    for response in (
        await _token(client, TWICE, PASSWORD),
        await _token(client, SHARED, THIRD_PASSWORD),  # a third account names its tenant
        await _token(client, SHARED, "wrong-password-123"),
        await _token(client, SHARED, OTHER_PASSWORD, tenant="acme"),  # the other's password
        await _token(client, SHARED, PASSWORD, tenant="nowhere"),
        await _token(client, "owner@initech.example", PASSWORD, tenant="acme"),
    ):
        assert _comparable(response) == _comparable(wrong), response.text
    assert (await _token(client, TWICE, PASSWORD, tenant="twin-b")).status_code == 200
    # An email with one account needs no tenant (and may name it).
    assert (await _token(client, "owner@initech.example", PASSWORD)).status_code == 200
    assert (await _token(client, "owner@initech.example", PASSWORD, "initech")).status_code == 200
    bad = await _token(client, "owner@initech.example", PASSWORD, tenant="Not A Slug")
    assert bad.status_code == 422


async def test_registering_someone_elses_email_neither_locks_them_out_nor_tells(
    harness: Harness,
) -> None:
    """The attacker signs up the victim's address in a tenant of their own: the victim's
    tenant-less login keeps working, and the attacker's own tenant-less login answers 200
    whether or not the address exists elsewhere (so it reveals nothing)."""
    client = harness.client
    await client.post("/v1/tenants", json=_signup_body("victim", SHARED))
    assert (await _token(client, SHARED, PASSWORD)).status_code == 200
    await client.post("/v1/tenants", json=_signup_body("attacker", SHARED, OTHER_PASSWORD))
    fresh = "nobody-else@example.com"
    await client.post("/v1/tenants", json=_signup_body("attacker-2", fresh, OTHER_PASSWORD))

    for email, slug, password in (
        (SHARED, "victim", PASSWORD),
        (SHARED, "attacker", OTHER_PASSWORD),  # exists elsewhere
        (fresh, "attacker-2", OTHER_PASSWORD),  # does not
    ):
        response = await _token(client, email, password)
        assert response.status_code == 200, response.text
        me = await client.get("/v1/me", headers=bearer(response.json()))
        assert me.json()["tenant"]["slug"] == slug
    # The victim's lockout is untouched by the attacker's logins in between.
    for _ in range(8):
        assert (await _token(client, SHARED, OTHER_PASSWORD)).status_code == 200
    assert (await _token(client, SHARED, PASSWORD)).status_code == 200


async def test_an_ambiguous_or_registered_elsewhere_email_costs_the_same(
    make_harness: Callable[..., Any],
) -> None:
    """Medians compared with each other, production hashing parameters (as the unknown-user
    timing test). Tenant-less logins always verify two candidates, so the attacker's own login
    takes as long whether the address exists in another tenant or not, and an ambiguous email
    as long as a wrong password."""
    harness: Harness = await make_harness(
        auth={
            "password": {"argon2_memory_kib": 19456, "argon2_time_cost": 2},
            "lockout": {"max_failures_per_account": 10_000, "max_failures_per_ip": 10_000},
        }
    )
    client = harness.client
    await client.post("/v1/tenants", json=_signup_body("acme", SHARED))
    await client.post("/v1/tenants", json=_signup_body("globex", SHARED))
    await client.post("/v1/tenants", json=_signup_body("victim", VICTIM))
    await client.post("/v1/tenants", json=_signup_body("attacker", VICTIM, OTHER_PASSWORD))
    await client.post("/v1/tenants", json=_signup_body("attacker-2", FRESH, OTHER_PASSWORD))
    await sign_up(client, "initech")
    cases: list[tuple[str, str, int, list[float]]] = [
        ("owner@initech.example", "wrong-1234", 401, []),  # wrong password
        (SHARED, PASSWORD, 401, []),  # ambiguous: both accounts match
        (VICTIM, OTHER_PASSWORD, 200, []),  # the attacker's: exists elsewhere
        (FRESH, OTHER_PASSWORD, 200, []),  # the attacker's: exists nowhere else
    ]
    for _ in range(3):  # warm up
        for email, password, _status, _samples in cases:
            await _token(client, email, password)
    for _ in range(25):  # interleaved, so drifts of the machine hit all alike
        for email, password, status, samples in cases:
            started = time.perf_counter()
            response = await _token(client, email, password)
            samples.append(time.perf_counter() - started)
            assert response.status_code == status, response.text
    medians = [statistics.median(samples) for *_, samples in cases]
    ambiguous = medians[1] / medians[0]
    elsewhere = medians[2] / medians[3]
    assert 0.7 <= ambiguous <= 1.4, f"ambiguous/wrong median ratio {ambiguous:.2f}"
    assert 0.7 <= elsewhere <= 1.4, f"exists-elsewhere/nowhere median ratio {elsewhere:.2f}"


async def test_a_success_in_one_tenant_does_not_clear_anothers_lockout(
    make_harness: Callable[..., Any],
) -> None:
    """An attacker who registered the victim's address in a tenant of their own cannot reset
    the victim's failure count by logging in to it between guesses."""
    harness: Harness = await make_harness(auth={"lockout": {"window_seconds": 2}})
    client = harness.client
    await client.post("/v1/tenants", json=_signup_body("victim", SHARED))
    await client.post("/v1/tenants", json=_signup_body("attacker", SHARED, OTHER_PASSWORD))
    await at_window_start(2)
    for n in range(5):
        guess = await _token(client, SHARED, f"guess-number-{n:03}", tenant="victim")
        assert guess.status_code == 401
        own = await _token(client, SHARED, OTHER_PASSWORD, tenant="attacker")
        assert own.status_code == 200
    locked = await _token(client, SHARED, PASSWORD, tenant="victim")
    assert locked.status_code == 429, locked.text
    assert problem(locked)["code"] == "auth.too_many_attempts"
    # The attacker's own account is not locked by it, and the victim's lock lifts with time.
    assert (await _token(client, SHARED, OTHER_PASSWORD, tenant="attacker")).status_code == 200
    await asyncio.sleep(int(locked.headers["retry-after"]))
    assert (await _token(client, SHARED, PASSWORD, tenant="victim")).status_code == 200
