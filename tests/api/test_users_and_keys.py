"""User management (ownership rules, sessions), API-key rules (grants, checksum, usage), and the
hot path's promise: cached credentials cost no database round trip."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import Harness, problem, raw_connect, replay_paused

OWNER = "owner@acme.example"


async def _owner(harness: Harness) -> dict[str, str]:
    await sign_up(harness.client, "acme")
    return bearer(await log_in(harness.client, OWNER))


async def _add_user(harness: Harness, headers: dict[str, str], email: str, role: str) -> str:
    response = await harness.client.post(
        "/v1/users", json={"email": email, "password": PASSWORD, "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    user_id: str = response.json()["id"]
    return user_id


async def test_the_last_owner_cannot_be_demoted_or_removed(harness: Harness) -> None:
    owner = await _owner(harness)
    me = (await harness.client.get("/v1/me", headers=owner)).json()["id"]
    for method, body in (("PATCH", {"role": "admin"}), ("DELETE", None)):
        response = await harness.client.request(method, f"/v1/users/{me}", json=body, headers=owner)
        assert response.status_code == 409, response.text
        assert problem(response)["code"] == "user.last_owner"
    # With a second owner, the first may step down; then the second is the last one.
    second = await _add_user(harness, owner, "second@acme.example", "owner")
    stepped = await harness.client.patch(f"/v1/users/{me}", json={"role": "admin"}, headers=owner)
    assert stepped.status_code == 200, stepped.text
    other = bearer(await log_in(harness.client, "second@acme.example"))
    response = await harness.client.delete(f"/v1/users/{second}", headers=other)
    assert response.status_code == 409


async def test_two_owners_demoting_each_other_at_once_leave_one(harness: Harness) -> None:
    first = await _owner(harness)
    first_id = (await harness.client.get("/v1/me", headers=first)).json()["id"]
    second_id = await _add_user(harness, first, "second@acme.example", "owner")
    second = bearer(await log_in(harness.client, "second@acme.example"))
    results = await asyncio.gather(
        harness.client.patch(f"/v1/users/{second_id}", json={"role": "member"}, headers=first),
        harness.client.patch(f"/v1/users/{first_id}", json={"role": "member"}, headers=second),
    )
    assert sorted(r.status_code for r in results) in ([200, 409], [200, 403])
    owners = harness.cluster.psql("primary", "SELECT count(*) FROM users WHERE role = 'owner'")
    assert owners.strip() == "1"


async def test_admins_manage_users_but_not_owners(harness: Harness) -> None:
    owner = await _owner(harness)
    owner_id = (await harness.client.get("/v1/me", headers=owner)).json()["id"]
    await _add_user(harness, owner, "admin@acme.example", "admin")
    admin = bearer(await log_in(harness.client, "admin@acme.example"))
    member_id = await _add_user(harness, admin, "member@acme.example", "member")
    for method, path, body in (
        ("POST", "/v1/users", {"email": "o2@acme.example", "password": PASSWORD, "role": "owner"}),
        ("PATCH", f"/v1/users/{owner_id}", {"role": "viewer"}),
        ("DELETE", f"/v1/users/{owner_id}", None),
        ("PATCH", f"/v1/users/{member_id}", {"role": "owner"}),
        ("PATCH", f"/v1/users/{owner_id}", {"password": "taken-over-pass-1"}),
    ):
        response = await harness.client.request(method, path, json=body, headers=admin)
        assert response.status_code == 403, (method, path, response.text)
    ok = await harness.client.patch(
        f"/v1/users/{member_id}", json={"role": "viewer"}, headers=admin
    )
    assert ok.json()["role"] == "viewer"


async def test_emails_are_unique_per_tenant_case_insensitively(harness: Harness) -> None:
    owner = await _owner(harness)
    await sign_up(harness.client, "globex")
    response = await harness.client.post(
        "/v1/users", json={"email": "owner@ACME.example", "password": PASSWORD}, headers=owner
    )
    assert response.status_code == 409
    assert problem(response)["code"] == "user.email_taken"
    # Another tenant's address is a new address here: nothing tells it is registered there.
    await _add_user(harness, owner, "OWNER@globex.example", "member")


async def test_a_demotion_applies_to_live_tokens(harness: Harness) -> None:
    owner = await _owner(harness)
    member_id = await _add_user(harness, owner, "m@acme.example", "member")
    member = bearer(await log_in(harness.client, "m@acme.example"))
    product = {"sku": "A", "name": "A", "price": {"amount": 1, "currency": "EUR"}}
    assert (
        await harness.client.post("/v1/products", json=product, headers=member)
    ).status_code == 201
    await harness.client.patch(f"/v1/users/{member_id}", json={"role": "viewer"}, headers=owner)
    again = await harness.client.post("/v1/products", json={**product, "sku": "B"}, headers=member)
    assert again.status_code == 403


async def test_a_demotion_is_not_undone_by_a_lagging_replica(make_harness: Any) -> None:
    harness = await make_harness(auth={"user_cache_ttl_seconds": 30})
    owner = await _owner(harness)
    member_id = await _add_user(harness, owner, "m@acme.example", "member")
    member = bearer(await log_in(harness.client, "m@acme.example"))
    await harness.wait_for(lambda: _replica_role(harness, member_id), what="replay")
    async with replay_paused(harness.cluster):
        demoted = await harness.client.patch(
            f"/v1/users/{member_id}", json={"role": "viewer"}, headers=owner
        )
        assert demoted.status_code == 200
        harness.client.consistency_token = None  # the member's own client never saw that write
        assert await _replica_role(harness, member_id) == "member"  # the replica is behind
        response = await harness.client.post(
            "/v1/products",
            json={"sku": "A", "name": "A", "price": {"amount": 1, "currency": "EUR"}},
            headers=member,
        )
        assert response.status_code == 403


async def _replica_role(harness: Harness, user_id: str) -> str | None:
    conn = await raw_connect(harness.cluster, "replica", "storefront")
    try:
        role: str | None = await conn.fetchval(
            "SELECT role FROM users WHERE id = $1::uuid", user_id
        )
        return role
    finally:
        await conn.close()


async def test_a_new_password_ends_the_users_sessions(harness: Harness) -> None:
    owner = await _owner(harness)
    member_id = await _add_user(harness, owner, "m@acme.example", "member")
    session = await log_in(harness.client, "m@acme.example")
    assert (await harness.client.get("/v1/me", headers=bearer(session))).status_code == 200
    changed = await harness.client.patch(
        f"/v1/users/{member_id}", json={"password": "brand-new-secret-2"}, headers=owner
    )
    assert changed.status_code == 200
    refresh = await harness.client.post(
        "/v1/auth/refresh", json={"refresh_token": session["refresh_token"]}
    )
    assert refresh.status_code == 401
    # The access token of that session is refused at once too (by this process).
    assert (await harness.client.get("/v1/me", headers=bearer(session))).status_code == 401
    await log_in(harness.client, "m@acme.example", PASSWORD, expect=401)
    await log_in(harness.client, "m@acme.example", "brand-new-secret-2")


async def test_users_are_listed_page_by_page(harness: Harness) -> None:
    owner = await _owner(harness)
    for n in range(3):
        await _add_user(harness, owner, f"u{n}@acme.example", "viewer")
    first = (await harness.client.get("/v1/users?limit=3", headers=owner)).json()
    assert len(first["items"]) == 3
    assert first["next_cursor"]
    rest = await harness.client.get(f"/v1/users?cursor={first['next_cursor']}", headers=owner)
    assert [u["email"] for u in rest.json()["items"]] == ["u2@acme.example"]
    assert rest.json()["next_cursor"] is None
    assert all("password" not in str(u) for u in first["items"])


async def test_no_one_mints_a_key_stronger_than_themselves(harness: Harness) -> None:
    owner = await _owner(harness)
    await _add_user(harness, owner, "admin@acme.example", "admin")
    admin = bearer(await log_in(harness.client, "admin@acme.example"))
    refused = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["api_keys:manage"]}, headers=admin
    )
    assert refused.status_code == 403
    manager = await harness.client.post(
        "/v1/api-keys",
        json={"name": "m", "scopes": ["api_keys:manage", "catalog:read"]},
        headers=owner,
    )
    key = {"X-API-Key": manager.json()["secret"]}
    narrower = await harness.client.post(
        "/v1/api-keys", json={"name": "r", "scopes": ["catalog:read"]}, headers=key
    )
    assert narrower.status_code == 201
    wider = await harness.client.post(
        "/v1/api-keys", json={"name": "w", "scopes": ["catalog:write"]}, headers=key
    )
    assert wider.status_code == 403
    unknown = await harness.client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=owner
    )
    assert unknown.status_code == 422


async def test_rotating_a_revoked_or_revoking_an_unknown_key_is_404(harness: Harness) -> None:
    owner = await _owner(harness)
    created = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["catalog:read"]}, headers=owner
    )
    key_id = created.json()["id"]
    assert (await harness.client.delete(f"/v1/api-keys/{key_id}", headers=owner)).status_code == 204
    again = await harness.client.delete(f"/v1/api-keys/{key_id}", headers=owner)
    assert again.status_code == 204  # revoking is idempotent
    for response in (
        await harness.client.post(f"/v1/api-keys/{key_id}/rotate", headers=owner),
        await harness.client.delete(f"/v1/api-keys/{uuid.uuid4()}", headers=owner),
    ):
        assert response.status_code == 404
        assert problem(response)["code"] == "api_key.not_found"


async def test_default_rotation_grace_comes_from_settings(make_harness: Any) -> None:
    harness = await make_harness(auth={"api_key_rotation_grace_seconds": 60})
    owner = await _owner(harness)
    created = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["catalog:read"]}, headers=owner
    )
    old = {"X-API-Key": created.json()["secret"]}
    rotated = await harness.client.post(
        f"/v1/api-keys/{created.json()['id']}/rotate", headers=owner
    )
    assert rotated.status_code == 201
    assert (await harness.client.get("/v1/products", headers=old)).status_code == 200
    harness.clock.advance(seconds=61)
    assert (await harness.client.get("/v1/products", headers=old)).status_code == 401


async def test_last_used_at_is_written_in_batches(harness: Harness) -> None:
    owner = await _owner(harness)
    created = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["catalog:read"]}, headers=owner
    )
    for _ in range(3):
        await harness.client.get("/v1/products", headers={"X-API-Key": created.json()["secret"]})
    listed = (await harness.client.get("/v1/api-keys", headers=owner)).json()["items"]
    assert listed[0]["last_used_at"] is None  # not one write per request...
    await harness.container.api_key_usage().flush()  # ...but one batch per flush interval
    listed = await harness.client.get(
        "/v1/api-keys", headers={**owner, "X-Read-Consistency": "strong"}
    )
    assert listed.json()["items"][0]["last_used_at"] is not None
    assert "secret" not in listed.json()["items"][0]


async def _routed_reads(harness: Harness) -> int:
    return sum(engine["routed_reads"] for engine in (await harness.ops_db()).values())


async def test_cached_credentials_cost_no_database_round_trip(make_harness: Any) -> None:
    harness = await make_harness(
        auth={"api_key_cache_ttl_seconds": 30, "user_cache_ttl_seconds": 30}
    )
    owner = await _owner(harness)
    created = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["catalog:read"]}, headers=owner
    )
    key = {"X-API-Key": created.json()["secret"]}
    for headers in (key, owner):
        await harness.client.get("/v1/products", headers=headers)  # warms the caches
        before = await _routed_reads(harness)
        for _ in range(5):
            assert (await harness.client.get("/v1/products", headers=headers)).status_code == 200
        assert await _routed_reads(harness) - before == 5  # the product queries only


async def test_mistyped_keys_are_refused_without_a_lookup(harness: Harness) -> None:
    owner = await _owner(harness)
    created = await harness.client.post(
        "/v1/api-keys", json={"name": "k", "scopes": ["catalog:read"]}, headers=owner
    )
    secret: str = created.json()["secret"]
    assert len(secret) >= len("sf_live_") + 43  # 32 random bytes, base64url
    typo = secret[:20] + ("A" if secret[20] != "A" else "B") + secret[21:]
    before = await _routed_reads(harness)
    for wrong in (typo, secret[:-1], secret + "x", secret.replace("sf_live_", "sf_test_")):
        response = await harness.client.get("/v1/products", headers={"X-API-Key": wrong})
        assert response.status_code == 401
    assert await _routed_reads(harness) == before
