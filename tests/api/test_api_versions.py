"""API versions (issue 12): the pin, the header, replays across a version change, deprecation
and sunset, the generated changelog. The contract of each version is in test_snapshots.py."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import http_sfv

from app.versions import FIRST, NEWEST, changelog
from tests.api.identity_helpers import bearer, log_in, sign_up
from tests.conftest import OPERATOR_TOKEN, Harness, problem

ROOT = Path(__file__).resolve().parents[2]
SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write")


async def _owner(harness: Harness, slug: str) -> dict[str, str]:
    await sign_up(harness.client, slug)
    return bearer(await log_in(harness.client, f"owner@{slug}.example"))


async def _served(harness: Harness, key: dict[str, str], version: str) -> None:
    """Until this process applies the new pin (`tenancy.changed` travels, ~ms; at most 5 s)."""
    for _ in range(100):
        seen = await harness.client.get("/v1/api-version", headers=key)
        if seen.headers["storefront-version"] == version:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the pin to {version} never reached the process")


async def _product(harness: Harness, key: dict[str, str]) -> str:
    body = {"sku": f"V-{uuid.uuid4().hex[:6]}", "name": "Cup", "stock": 10}
    body["price"] = {"amount": 250, "currency": "EUR"}
    created = await harness.client.post("/v1/products", json=body, headers=key)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _order(product: str) -> dict[str, Any]:
    return {"items": [{"product_id": product, "quantity": 2}], "payment": {"token": "tok_ok"}}


async def test_sign_up_pins_the_newest_and_the_owner_moves_the_pin(harness: Harness) -> None:
    owner = await _owner(harness, "pinner")
    seen = await harness.client.get("/v1/api-version", headers=owner)
    assert seen.status_code == 200
    assert seen.json() == {
        "pinned": NEWEST.name,
        "served": NEWEST.name,
        "newest": NEWEST.name,
        "versions": ["2026-11-23", "2026-12-03", "2026-12-04"],
    }
    moved = await harness.client.put("/v1/api-version", json={"version": FIRST.name}, headers=owner)
    assert moved.status_code == 200, moved.text
    assert moved.json()["pinned"] == FIRST.name
    await _served(harness, owner, FIRST.name)
    after = await harness.client.get("/v1/api-version", headers=owner)
    assert after.headers["storefront-version"] == FIRST.name
    assert after.json()["served"] == FIRST.name
    # The header beats the pin, per request.
    named = await harness.client.get(
        "/v1/api-version", headers={**owner, "Storefront-Version": NEWEST.name}
    )
    assert (named.json()["served"], named.json()["pinned"]) == (NEWEST.name, FIRST.name)
    unknown = await harness.client.put(
        "/v1/api-version", json={"version": "2020-01-01"}, headers=owner
    )
    assert unknown.status_code == 400
    assert problem(unknown)["code"] == "api.version_unknown"


async def test_an_unknown_version_header_is_a_clear_400(harness: Harness) -> None:
    response = await harness.client.get("/health/live", headers={"Storefront-Version": "v2"})
    assert response.status_code == 400
    body = problem(response)
    assert body["code"] == "api.version_unknown"
    assert "2026-11-23" in body["detail"]


async def test_a_replay_renders_for_the_callers_version_now(harness: Harness) -> None:
    """An order placed on the first version, replayed after the tenant moved to the newest,
    answers in the newest shape: the key keeps a domain outcome, not a v1 body."""
    tenant, secret = await harness.tenant_with_key("replayer", scopes=SCOPES)
    await harness.container.tenancy_service().pin_api_version(tenant.id, FIRST.name)
    key = {"X-API-Key": secret}
    product = await _product(harness, key)
    keyed = {**key, "Idempotency-Key": "replay-across-versions"}
    first = await harness.client.post("/v1/orders", json=_order(product), headers=keyed)
    assert first.status_code == 201, first.text
    assert first.headers["storefront-version"] == FIRST.name
    assert "items" in first.json()
    assert "lines" not in first.json()

    await harness.container.tenancy_service().pin_api_version(tenant.id, NEWEST.name)
    await _served(harness, key, NEWEST.name)
    again = await harness.client.post("/v1/orders", json=_order(product), headers=keyed)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["storefront-version"] == NEWEST.name
    body = again.json()
    assert body["id"] == first.json()["id"]
    assert body["lines"] == [
        {
            "product_id": product,
            "quantity": 2,
            "unit_price": {"amount": 250, "currency": "EUR"},
            "line_total": {"amount": 500, "currency": "EUR"},
        }
    ]
    # And back in the first version's shape for a caller naming it.
    old = await harness.client.post(
        "/v1/orders", json=_order(product), headers={**keyed, "Storefront-Version": FIRST.name}
    )
    assert old.json() == first.json()


async def test_a_key_stored_before_domain_outcomes_still_replays(harness: Harness) -> None:
    """Keys written by the previous release (HTTP status + the 2026-11-23 body) live 24 h:
    a replay reads them and renders the caller's version."""
    tenant, secret = await harness.tenant_with_key("legacy", scopes=SCOPES)
    key = {"X-API-Key": secret}
    product = await _product(harness, key)
    keyed = {**key, "Idempotency-Key": "legacy-key"}
    placed = await harness.client.post("/v1/orders", json=_order(product), headers=keyed)
    assert placed.status_code == 201
    old_body = {k: v for k, v in placed.json().items() if k != "lines"}
    old_body["items"] = [
        {k: v for k, v in line.items() if k != "line_total"} for line in placed.json()["lines"]
    ]
    harness.cluster.psql(
        "primary",
        "UPDATE idempotency_keys SET response_status = 201,"
        f" response_body = '{json.dumps(old_body)}'::jsonb"
        f" WHERE tenant_id = '{tenant.id}' AND key = 'legacy-key'",
    )
    replay = await harness.client.post("/v1/orders", json=_order(product), headers=keyed)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert {k: v for k, v in replay.json().items() if k != "updated_at"} == {
        k: v for k, v in placed.json().items() if k != "updated_at"
    }


async def test_a_declined_payment_replays_as_the_same_problem(harness: Harness) -> None:
    _, secret = await harness.tenant_with_key("decline", scopes=SCOPES)
    key = {"X-API-Key": secret}
    product = await _product(harness, key)
    keyed = {**key, "Idempotency-Key": "declined"}
    declined = {**_order(product), "payment": {"token": "tok_declined"}}
    first = await harness.client.post("/v1/orders", json=declined, headers=keyed)
    again = await harness.client.post("/v1/orders", json=declined, headers=keyed)
    assert (first.status_code, again.status_code) == (402, 402)
    assert again.headers["idempotent-replayed"] == "true"
    ignored = {"request_id"}
    assert {k: v for k, v in problem(again).items() if k not in ignored} == {
        k: v for k, v in problem(first).items() if k not in ignored
    }


async def test_a_deprecated_version_says_so_and_is_gone_after_its_sunset(
    make_harness: Any,
) -> None:
    deprecated_at = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    # Given with another offset: announced in GMT all the same.
    sunset_at = (deprecated_at + timedelta(days=30)).astimezone(timezone(timedelta(hours=2)))
    link = "https://storefront.dev/docs/changelog#2026-12-03"
    harness: Harness = await make_harness(
        api={
            "deprecations": [
                {
                    "version": FIRST.name,
                    "deprecated_at": deprecated_at.isoformat(),
                    "sunset_at": sunset_at.isoformat(),
                    "link": link,
                },
                {
                    "route": "GET /v1/features",
                    "deprecated_at": deprecated_at.isoformat(),
                    "sunset_at": sunset_at.isoformat(),
                },
            ]
        }
    )
    tenant, secret = await harness.tenant_with_key("sunsetting", scopes=SCOPES)
    await harness.container.tenancy_service().pin_api_version(tenant.id, FIRST.name)
    key = {"X-API-Key": secret}

    response = await harness.client.get("/v1/products", headers=key)
    assert response.status_code == 200
    assert response.headers["storefront-version"] == FIRST.name
    parsed = http_sfv.Item()
    parsed.parse(response.headers["deprecation"].encode())
    assert parsed.value == deprecated_at.replace(tzinfo=None)  # an sf-date (`@` + unix seconds)
    assert response.headers["deprecation"] == f"@{int(deprecated_at.timestamp())}"
    assert parsedate_to_datetime(response.headers["sunset"]) == sunset_at
    assert response.headers["link"] == f'<{link}>; rel="deprecation"'
    newest = await harness.client.get(
        "/v1/products", headers={**key, "Storefront-Version": NEWEST.name}
    )
    assert "deprecation" not in newest.headers
    route = await harness.client.get(
        "/v1/features", headers={**key, "Storefront-Version": NEWEST.name}
    )
    assert route.status_code == 200
    assert route.headers["deprecation"] == f"@{int(deprecated_at.timestamp())}"
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    # The version and the route both deprecated: one Deprecation, one Sunset, a Link each.
    both = await harness.client.get("/v1/features", headers=key)
    assert both.headers.get_list("deprecation") == [f"@{int(deprecated_at.timestamp())}"]
    assert len(both.headers.get_list("sunset")) == 1
    assert response.headers["sunset"].endswith(" GMT")
    metrics = (await harness.client.get("/metrics", headers=operator)).text
    assert (
        "storefront_api_deprecated_requests_total"
        f'{{tenant="{tenant.id}",version="{FIRST.name}"}} 2.0'
    ) in metrics

    harness.clock.advance(seconds=(sunset_at - datetime.now(UTC)).total_seconds() + 1)
    gone = await harness.client.get("/v1/products", headers=key)
    assert gone.status_code == 410
    assert problem(gone)["code"] == "api.version_sunset"
    assert link in problem(gone)["detail"]
    named = await harness.client.get(
        "/v1/products", headers={**key, "Storefront-Version": FIRST.name}
    )
    assert (named.status_code, problem(named)["code"]) == (410, "api.version_sunset")
    still = await harness.client.get(
        "/v1/products", headers={**key, "Storefront-Version": NEWEST.name}
    )
    assert still.status_code == 200
    owner = await _owner(harness, "late-mover")
    late = await harness.client.put("/v1/api-version", json={"version": FIRST.name}, headers=owner)
    assert (late.status_code, problem(late)["code"]) == (410, "api.version_sunset")
    route_gone = await harness.client.get(
        "/v1/features", headers={**key, "Storefront-Version": NEWEST.name}
    )
    assert (route_gone.status_code, problem(route_gone)["code"]) == (410, "api.route_sunset")


def test_the_changelog_is_generated_from_the_versions() -> None:
    """docs/changelog.md is `app.versions.changelog()`, each change's docstring its entry."""
    assert (ROOT / "docs" / "changelog.md").read_text() == changelog()
    assert "`items` is renamed `lines`" in changelog()


async def test_the_periodic_resync_reads_pins_too(harness: Harness) -> None:
    """The fallback path of a pin (a missed NOTIFY): the full read, then the changed rows."""
    tenant, _ = await harness.tenant_with_key("resynced", scopes=SCOPES)
    policies = harness.container.tenant_policies()
    await policies.resync()  # every tenant (the first read of a process) or the changed ones
    await harness.container.tenancy_service().pin_api_version(tenant.id, FIRST.name)
    await policies.resync()  # the changed ones since the last read
    assert await policies.api_version_of(tenant.id) == FIRST.name
    assert policies.loaded_at is not None
    assert not isinstance(policies.loaded_at, str)
