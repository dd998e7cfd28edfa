"""API-key authentication and scopes."""

from __future__ import annotations

from typing import Any

from tests.conftest import Harness, problem


async def test_missing_and_unknown_keys_are_401(harness: Harness) -> None:
    missing = await harness.client.get("/v1/products")
    assert missing.status_code == 401
    assert problem(missing)["code"] == "auth.unauthenticated"
    assert "www-authenticate" in missing.headers
    for key in ("sf_live_unknown", "garbage", "sf_live_" + "x" * 300):
        response = await harness.client.get("/v1/products", headers={"X-API-Key": key})
        assert response.status_code == 401, key
    # Non-ASCII header bytes (latin-1 on the wire) in either credential: 401, never a 500.
    odd = ("sf_live_" + "é" * 49).encode("latin-1")
    for name, value in (("X-API-Key", odd), ("Authorization", b"Bearer \xe9\xe9.\xe9.\xe9")):
        response = await harness.client.get("/v1/products", headers={name: value})
        assert response.status_code == 401, name


async def test_revoked_key_is_401(harness: Harness) -> None:
    tenant, secret = await harness.tenant_with_key("acme")
    headers = {"X-API-Key": secret}
    assert (await harness.client.get("/v1/products", headers=headers)).status_code == 200
    keys = (await harness.container.api_key_service().list(tenant.id)).items
    await harness.container.api_key_service().revoke(tenant.id, keys[0].id)
    response = await harness.client.get("/v1/products", headers=headers)
    assert response.status_code == 401


async def test_expired_key_is_401(harness: Harness) -> None:
    tenant = await harness.container.tenant_service().create("acme", "Acme")
    _, secret = await harness.container.api_key_service().issue(
        tenant.id, "short", ["catalog:read"], expires_in_days=1
    )
    headers = {"X-API-Key": secret}
    assert (await harness.client.get("/v1/products", headers=headers)).status_code == 200
    harness.clock.advance(days=2)
    response = await harness.client.get("/v1/products", headers=headers)
    assert response.status_code == 401


async def test_key_without_scope_is_403(harness: Harness) -> None:
    _, secret = await harness.tenant_with_key("acme", scopes=("catalog:read",))
    headers = {"X-API-Key": secret}
    assert (await harness.client.get("/v1/products", headers=headers)).status_code == 200
    response = await harness.client.post(
        "/v1/products",
        json={"sku": "A", "name": "A", "price": {"amount": 1, "currency": "EUR"}},
        headers=headers,
    )
    assert response.status_code == 403
    assert problem(response)["code"] == "auth.insufficient_scope"


async def test_api_key_issue_rejects_unknown_scopes(harness: Harness, acme: dict[str, Any]) -> None:
    import pytest

    from app.identity.service import InvalidScopes

    with pytest.raises(InvalidScopes):
        await harness.container.api_key_service().issue(acme["tenant"].id, "x", ["root"])


async def test_revocation_beats_the_key_cache(make_harness: Any) -> None:
    harness = await make_harness(auth={"api_key_cache_ttl_seconds": 300})
    tenant, secret = await harness.tenant_with_key("acme")
    headers = {"X-API-Key": secret}
    assert (await harness.client.get("/v1/products", headers=headers)).status_code == 200
    keys = harness.container.api_key_service()
    await keys.revoke(tenant.id, (await keys.list(tenant.id)).items[0].id)
    # Cached for 5 minutes, yet refused at once (and not re-admitted from a lagging replica).
    for _ in range(3):
        assert (await harness.client.get("/v1/products", headers=headers)).status_code == 401
