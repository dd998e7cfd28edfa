"""Identity findings of the outside attack run (issue 8, finding 7):

- a JWT with `exp: "nan"` or `"1e999"`, signed with the real key, was accepted;
- the role cache was keyed by user id only: a token whose `tid` named another tenant got the
  user's cached role in that tenant;
- a rotated API key, still in its grace period, could mint new keys;
- API-key guesses cost a database lookup each, with no throttling.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
import redis

from app.identity.keys import new_secret
from app.identity.permissions import Role
from tests.api.identity_helpers import bearer, log_in, sign_up
from tests.conftest import Harness, problem
from tests.served_app import ServedApp

SECRET = "a-test-hs256-secret-of-at-least-32-bytes"
KEYS = [{"kid": "hs-1", "algorithm": "HS256", "key": SECRET}]


@pytest.fixture
async def signed_in(make_harness: Any) -> tuple[Harness, dict[str, Any], dict[str, Any]]:
    # Caches on, as in production: the role of a token's user is trusted for 30 s.
    harness: Harness = await make_harness(
        auth={"tokens": {"keys": KEYS}, "user_cache_ttl_seconds": 30}
    )
    await sign_up(harness.client, "acme")
    tokens = await log_in(harness.client, "owner@acme.example")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return harness, tokens, claims


async def _refused(harness: Harness, token: str) -> dict[str, Any]:
    response = await harness.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    assert "www-authenticate" in response.headers
    return problem(response)


@pytest.mark.parametrize(
    "value",
    ["nan", "1e999", "Infinity", "1700000000", True, float("nan"), float("inf"), 10**400],
    ids=["nan", "1e999", "Infinity", "numeric-string", "bool", "NaN", "inf", "huge-int"],
)
@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
async def test_time_claims_that_are_not_finite_numbers_are_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]], claim: str, value: Any
) -> None:
    harness, tokens, claims = signed_in
    assert (await harness.client.get("/v1/me", headers=bearer(tokens))).status_code == 200
    forged = jwt.encode(
        {**claims, claim: value, "jti": uuid.uuid4().hex},
        SECRET,
        algorithm="HS256",
        headers={"kid": "hs-1"},
    )
    body = await _refused(harness, forged)
    assert body["code"] == "auth.invalid_token"


async def test_a_token_naming_another_tenant_gets_no_cached_role(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, tokens, claims = signed_in
    me = await harness.client.get("/v1/me", headers=bearer(tokens))
    assert me.status_code == 200
    assert me.json()["role"] == "owner"
    globex = await sign_up(harness.client, "globex")
    # Signed with the real key (the container's TokenService): only `tid` is wrong.
    forged = harness.container.token_service().issue_access(
        uuid.UUID(claims["sub"]), uuid.UUID(globex["tenant"]["id"]), Role.owner, uuid.uuid4()
    )
    await _refused(harness, forged)
    created = await harness.client.post(
        "/v1/users",
        json={"email": "mole@globex.example", "password": "a-long-password-1", "role": "owner"},
        headers={"Authorization": f"Bearer {forged}"},
    )
    assert created.status_code == 401, created.text
    assert (await harness.client.get("/v1/me", headers=bearer(tokens))).status_code == 200


async def test_a_rotated_key_in_its_grace_period_cannot_mint_keys(make_harness: Any) -> None:
    harness: Harness = await make_harness(auth={"api_key_cache_ttl_seconds": 30})
    _, old = await harness.tenant_with_key("acme", scopes=("api_keys:manage", "catalog:read"))
    headers = {"X-API-Key": old}
    listed = await harness.client.get("/v1/api-keys", headers=headers)  # cached from here on
    assert listed.status_code == 200, listed.text
    key_id = listed.json()["items"][0]["id"]
    rotated = await harness.client.post(f"/v1/api-keys/{key_id}/rotate", headers=headers)
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()["secret"]

    # The old secret still works for its grace period...
    assert (await harness.client.get("/v1/api-keys", headers=headers)).status_code == 200
    # ...but mints nothing: neither a new key nor a rotation of the new one.
    body = {"name": "sneaky", "scopes": ["catalog:read"]}
    for attempt in (
        harness.client.post("/v1/api-keys", json=body, headers=headers),
        harness.client.post(f"/v1/api-keys/{rotated.json()['id']}/rotate", headers=headers),
    ):
        response = await attempt
        assert response.status_code == 403, response.text
        assert problem(response)["code"] == "api_key.rotated"
    minted = await harness.client.post("/v1/api-keys", json=body, headers={"X-API-Key": new})
    assert minted.status_code == 201, minted.text


async def test_a_rotated_key_in_its_grace_period_cannot_revoke_keys(make_harness: Any) -> None:
    """A leaked old secret must not lock out its replacement (or any other key)."""
    harness: Harness = await make_harness()
    tenant, old = await harness.tenant_with_key("acme", scopes=("api_keys:manage", "catalog:read"))
    other, _ = await harness.container.api_key_service().issue(tenant.id, "other", ["catalog:read"])
    headers = {"X-API-Key": old}
    listed = (await harness.client.get("/v1/api-keys", headers=headers)).json()["items"]
    old_id, other_id = next(k["id"] for k in listed if k["name"] == "test"), str(other.id)
    rotated = await harness.client.post(f"/v1/api-keys/{old_id}/rotate", headers=headers)
    assert rotated.status_code == 201, rotated.text
    new, new_id = rotated.json()["secret"], rotated.json()["id"]

    for target in (new_id, other_id, old_id):
        refused = await harness.client.delete(f"/v1/api-keys/{target}", headers=headers)
        assert refused.status_code == 403, refused.text
        assert problem(refused)["code"] == "api_key.rotated"
    assert (await harness.client.get("/v1/api-keys", headers={"X-API-Key": new})).status_code == 200
    # The new key may revoke the old one (and the old one is then refused at once).
    gone = await harness.client.delete(f"/v1/api-keys/{old_id}", headers={"X-API-Key": new})
    assert gone.status_code == 204, gone.text
    assert (await harness.client.get("/v1/api-keys", headers=headers)).status_code == 401


LIMITED = {"api_key_failures_per_ip": 3, "api_key_failure_window_seconds": 60}


def _client_from(harness: Harness, address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=harness.app, client=(address, 40000)),
        base_url="http://testserver",
    )


async def test_failed_api_keys_are_throttled_per_client_address(make_harness: Any) -> None:
    harness: Harness = await make_harness(auth={**LIMITED, "api_key_cache_ttl_seconds": 30})
    tenant, good = await harness.tenant_with_key("acme")
    _, unused = await harness.container.api_key_service().issue(tenant.id, "b", ["catalog:read"])
    async with _client_from(harness, "203.0.113.7") as attacker:
        assert (await attacker.get("/v1/products", headers={"X-API-Key": good})).status_code == 200
        for _ in range(3):  # well-formed guesses: each one cost a lookup
            guess = await attacker.get("/v1/products", headers={"X-API-Key": new_secret()})
            assert guess.status_code == 401, guess.text
        refused = await attacker.get("/v1/products", headers={"X-API-Key": new_secret()})
        assert refused.status_code == 429, refused.text
        assert problem(refused)["code"] == "auth.api_key_attempts"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        # Refused before any lookup: even a real key that is not cached yet is refused...
        blocked = await attacker.get("/v1/products", headers={"X-API-Key": unused})
        assert blocked.status_code == 429
        # ...while a cached key costs no throttle check and keeps working.
        assert (await attacker.get("/v1/products", headers={"X-API-Key": good})).status_code == 200
        async with _client_from(harness, "198.51.100.9") as someone_else:
            other = await someone_else.get("/v1/products", headers={"X-API-Key": unused})
            assert other.status_code == 200, other.text
        harness.clock.advance(seconds=61)  # the window ends: keys are looked up again
        again = await attacker.get("/v1/products", headers={"X-API-Key": new_secret()})
        assert again.status_code == 401


async def test_a_key_in_use_behind_a_blocked_address_keeps_working(make_harness: Any) -> None:
    """Behind one NAT address, guesses must not block the valid keys in use there: a key that
    authenticated lately is still looked up (the test config caches no key: every request
    takes the lookup path); a key never seen stays refused until the window passes."""
    harness: Harness = await make_harness(auth=LIMITED)
    service = harness.container.api_key_service()
    tenant, good = await harness.tenant_with_key("acme")
    _, unseen = await service.issue(tenant.id, "unseen", ["catalog:read"])
    doomed, doomed_secret = await service.issue(tenant.id, "doomed", ["catalog:read"])
    async with _client_from(harness, "203.0.113.7") as office:
        for key in (good, doomed_secret):
            assert (await office.get("/v1/products", headers={"X-API-Key": key})).status_code == 200
        for _ in range(3):
            guess = await office.get("/v1/products", headers={"X-API-Key": new_secret()})
            assert guess.status_code == 401, guess.text
        refused = await office.get("/v1/products", headers={"X-API-Key": new_secret()})
        assert refused.status_code == 429, refused.text
        for _ in range(3):  # looked up each time, still fine
            used = await office.get("/v1/products", headers={"X-API-Key": good})
            assert used.status_code == 200, used.text
        never_seen = await office.get("/v1/products", headers={"X-API-Key": unseen})
        assert never_seen.status_code == 429, never_seen.text
        assert problem(never_seen)["code"] == "auth.api_key_attempts"
        # A revoked key leaves the set: from the blocked address it is refused before lookup.
        await service.revoke(tenant.id, doomed.id)
        revoked = await office.get("/v1/products", headers={"X-API-Key": doomed_secret})
        assert revoked.status_code == 429, revoked.text
        harness.clock.advance(seconds=61)
        assert (await office.get("/v1/products", headers={"X-API-Key": unseen})).status_code == 200


def test_failed_api_keys_are_counted_across_processes_with_redis(
    served_apps: Callable[..., ServedApp], redis_url: str
) -> None:
    """Two real processes on one Redis (all requests come from 127.0.0.1)."""
    redis.Redis.from_url(redis_url).delete("storefront:api_key:ip:127.0.0.1")
    env = {
        "STOREFRONT_REDIS__URL": redis_url,
        "STOREFRONT_AUTH__API_KEY_FAILURES_PER_IP": "3",
        "STOREFRONT_AUTH__API_KEY_FAILURE_WINDOW_SECONDS": "60",
    }
    first, second = served_apps(env=env), served_apps(env=env)

    def guess(app: ServedApp) -> httpx.Response:
        return httpx.get(f"{app.url}/v1/products", headers={"X-API-Key": new_secret()})

    for _ in range(3):
        assert guess(first).status_code == 401
    assert guess(first).status_code == 429
    # The second process pays one lookup (its first failure tells it the shared count)...
    paid = guess(second)
    assert paid.status_code == 401, paid.text
    # ...then refuses without any.
    refused = guess(second)
    assert refused.status_code == 429, refused.text
    assert problem(refused)["code"] == "auth.api_key_attempts"
    assert "retry-after" in refused.headers
