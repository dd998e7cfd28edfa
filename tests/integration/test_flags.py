"""Feature flags end to end: the CLI writes, every running process sees it within 2 s (through
GET /v1/features), two processes assign tenants identically, and `catalog.search_prefix`
changes what `GET /v1/products?q=` matches for the tenants it is on for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from app.flags.rules import bucket
from tests.conftest import Harness, problem
from tests.integration.test_cli import storefront
from tests.served_app import ServedApp

FLAG = "catalog.search_prefix"


def _features(app: ServedApp, key: str) -> dict[str, bool]:
    response = httpx.get(f"{app.url}/v1/features", headers={"X-API-Key": key})
    assert response.status_code == 200, response.text
    features: dict[str, bool] = response.json()["features"]
    return features


def _within(seconds: float, check: Callable[[], bool]) -> float:
    started = time.monotonic()
    while not check():
        elapsed = time.monotonic() - started
        assert elapsed <= seconds, f"not within {seconds} s"
        time.sleep(0.05)
    return time.monotonic() - started


def _cli_ok(harness: Harness, *args: str) -> str:
    result = storefront(harness, "flags", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout


async def test_cli_changes_reach_running_processes_within_two_seconds_and_agree(
    harness: Harness, served_apps: Callable[..., ServedApp]
) -> None:
    # Tenant ids are random: make tenants until both sides of a 50% rollout have some (eight
    # random ones all land on one side once in 128 runs).
    tenants: list[tuple[Any, str]] = []
    while len(tenants) < 8 or len({bucket(FLAG, t.id) < 5000 for t, _ in tenants}) < 2:
        tenants.append(await harness.tenant_with_key(f"tenant-{len(tenants)}"))
    first, second = served_apps(), served_apps()
    key0 = tenants[0][1]
    assert _features(second, key0) == {}

    # Created while both processes run: the second sees it within 2 s, without a restart.
    _cli_ok(harness, "set", FLAG, "--enabled", "--rollout", "50", "--description", "prefix")
    took = _within(2.0, lambda: FLAG in _features(second, key0))
    assert took < 2.0

    # Both processes give every tenant the same answer, the one the bucket function gives.
    _within(2.0, lambda: FLAG in _features(first, key0))
    for tenant, key in tenants:
        expected = bucket(FLAG, tenant.id) < 5000
        assert _features(first, key)[FLAG] is expected
        assert _features(second, key)[FLAG] is expected
    assert {bucket(FLAG, t.id) < 5000 for t, _ in tenants} == {True, False}  # a real split

    # An override beats the rule, and reaches the other process within 2 s too.
    off_tenant, off_key = next((t, k) for t, k in tenants if bucket(FLAG, t.id) >= 5000)
    _cli_ok(harness, "override", FLAG, "on", "--tenant", off_tenant.slug)
    _within(2.0, lambda: _features(second, off_key)[FLAG])
    assert _features(first, off_key)[FLAG] is True

    # The kill switch beats the override, everywhere.
    _cli_ok(harness, "set", FLAG, "--disabled")
    _within(2.0, lambda: not any(_features(second, k)[FLAG] for _, k in tenants[:3]))
    assert _features(second, off_key)[FLAG] is False

    listed = _cli_ok(harness, "list")
    assert f"{FLAG}\tdisabled\trollout=50%\toverrides=1\tprefix" in listed


async def test_search_prefix_flag_changes_product_search_for_its_tenants(
    harness: Harness,
) -> None:
    on_tenant, on_key = await harness.tenant_with_key("prefix-on")
    _, off_key = await harness.tenant_with_key("prefix-off")
    products = [
        {"sku": "W-1", "name": "Widget blue", "price": {"amount": 100, "currency": "EUR"}},
        {"sku": "B-2", "name": "Blue widget", "price": {"amount": 100, "currency": "EUR"}},
        {"sku": "G-3", "name": "Gadget", "price": {"amount": 100, "currency": "EUR"}},
    ]
    for key in (on_key, off_key):
        for body in products:
            created = await harness.client.post(
                "/v1/products", json={**body, "stock": 1}, headers={"X-API-Key": key}
            )
            assert created.status_code == 201, created.text

    async def names(key: str, q: str) -> set[str]:
        response = await harness.client.get(
            "/v1/products",
            params={"q": q},
            headers={"X-API-Key": key, "X-Read-Consistency": "strong"},
        )
        assert response.status_code == 200, response.text
        return {p["name"] for p in response.json()["items"]}

    both = {"Widget blue", "Blue widget"}
    assert await names(on_key, "widget") == await names(off_key, "widget") == both

    # On for one tenant only (rollout 0, override on): the in-process store hears the NOTIFY.
    flags = harness.container.flag_service()
    await flags.set(FLAG, enabled=True, rollout_buckets=0)
    await flags.override(FLAG, on_tenant.id, True)

    async def seen() -> bool:
        response = await harness.client.get("/v1/features", headers={"X-API-Key": on_key})
        return bool(response.json()["features"].get(FLAG))

    await harness.wait_for(seen, within=2.0, what="the flag in the snapshot")
    assert await names(on_key, "widget") == {"Widget blue"}  # prefix: name starts with it
    assert await names(on_key, "w-") == {"Widget blue"}  # or the SKU does
    assert await names(on_key, "gadget") == {"Gadget"}
    assert await names(off_key, "widget") == both  # substring, as before
    assert await names(off_key, "w-") == {"Widget blue"}

    # Rolled back by clearing the override: substring again.
    await flags.override(FLAG, on_tenant.id, None)

    async def gone() -> bool:
        return not await seen()

    await harness.wait_for(gone, within=2.0, what="the override cleared")
    assert await names(on_key, "widget") == both


async def test_features_need_credentials_and_list_every_flag(harness: Harness) -> None:
    anonymous = await harness.client.get("/v1/features")
    assert anonymous.status_code == 401
    problem(anonymous)
    _, key = await harness.tenant_with_key("viewer", scopes=("orders:read",))
    await harness.container.flag_service().set("reports.beta", enabled=False)
    await harness.container.flag_store().reload()
    response = await harness.client.get("/v1/features", headers={"X-API-Key": key})
    assert response.status_code == 200
    assert response.json() == {"features": {"reports.beta": False}}


async def test_cli_rejects_unknown_flags_and_tenants(harness: Harness) -> None:
    missing = storefront(harness, "flags", "override", "nope", "on", "--tenant", "nobody")
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: tenant.not_found")
    await harness.tenant_with_key("acme")
    unknown = storefront(harness, "flags", "override", "nope", "on", "--tenant", "acme")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: flags.not_found: no feature flag 'nope'"
    bad = storefront(harness, "flags", "set", "Bad Key!")
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: flags.invalid")
    too_much = storefront(harness, "flags", "set", FLAG, "--rollout", "101")
    assert too_much.returncode != 0
