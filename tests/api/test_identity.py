"""Sign-up, login, /v1/me, API-key lifecycle, refresh rotation, logout, passwords."""

from __future__ import annotations

import asyncio
from typing import Any

import bcrypt

from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import Harness, problem


async def test_sign_up_log_in_me_and_the_api_key_lifecycle(harness: Harness) -> None:
    client = harness.client
    signed = await sign_up(client, "acme", "Owner@Acme.Example")
    assert signed["tenant"]["slug"] == "acme"
    assert signed["owner"]["role"] == "owner"
    assert signed["owner"]["email"] == "owner@acme.example"  # compared case-insensitively
    assert "password" not in str(signed)

    tokens = await log_in(client, "OWNER@acme.example")
    assert tokens["token_type"] == "bearer"
    assert tokens["expires_in"] == 900

    me = await client.get("/v1/me", headers=bearer(tokens))
    assert me.status_code == 200, me.text
    assert me.json()["kind"] == "user"
    assert me.json()["role"] == "owner"
    assert me.json()["tenant"]["id"] == signed["tenant"]["id"]

    created = await client.post(
        "/v1/api-keys",
        json={"name": "ci", "scopes": ["catalog:read", "catalog:write"]},
        headers=bearer(tokens),
    )
    assert created.status_code == 201, created.text
    old_secret = created.json()["secret"]
    assert old_secret.startswith("sf_live_")
    assert created.headers["cache-control"] == "no-store"
    key_me = await client.get("/v1/me", headers={"X-API-Key": old_secret})
    assert key_me.json()["kind"] == "api_key"
    assert key_me.json()["scopes"] == ["catalog:read", "catalog:write"]
    assert (await client.get("/v1/products", headers={"X-API-Key": old_secret})).status_code == 200

    rotated = await client.post(
        f"/v1/api-keys/{created.json()['id']}/rotate",
        json={"grace_period_seconds": 3600},
        headers=bearer(tokens),
    )
    assert rotated.status_code == 201, rotated.text
    new_secret = rotated.json()["secret"]
    assert new_secret != old_secret
    assert rotated.json()["scopes"] == ["catalog:read", "catalog:write"]
    for secret in (old_secret, new_secret):  # grace period: both work
        assert (await client.get("/v1/products", headers={"X-API-Key": secret})).status_code == 200

    harness.clock.advance(seconds=3601)
    expired = await client.get("/v1/products", headers={"X-API-Key": old_secret})
    assert expired.status_code == 401
    assert problem(expired)["code"] == "auth.unauthenticated"
    assert (await client.get("/v1/products", headers={"X-API-Key": new_secret})).status_code == 200

    tokens = await log_in(client, "owner@acme.example")  # the first access token has expired
    revoked = await client.delete(f"/v1/api-keys/{rotated.json()['id']}", headers=bearer(tokens))
    assert revoked.status_code == 204
    assert (await client.get("/v1/products", headers={"X-API-Key": new_secret})).status_code == 401


async def test_sign_up_rules(harness: Harness) -> None:
    client = harness.client
    await sign_up(client, "acme")
    body = {
        "name": "Other",
        "slug": "acme",
        "owner": {"email": "x@y.example", "password": PASSWORD},
    }
    taken = await client.post("/v1/tenants", json=body)
    assert taken.status_code == 409
    assert problem(taken)["code"] == "tenant.slug_taken"

    # Emails are unique per tenant: another tenant's owner address is no obstacle (and so
    # sign-up tells nothing about who is registered elsewhere).
    same_email = {
        **body,
        "slug": "other",
        "owner": {"email": "OWNER@ACME.example", "password": PASSWORD},
    }
    response = await client.post("/v1/tenants", json=same_email)
    assert response.status_code == 201, response.text

    for bad_slug in ("AB", "a", "has space", "x" * 41):
        response = await client.post("/v1/tenants", json={**body, "slug": bad_slug})
        assert response.status_code == 422, bad_slug
    for password, code in (
        ("x" * 200, "request.invalid"),  # 200 bytes: more than 128 characters
        ("short", "request.invalid"),
        ("password1234", "user.weak_password"),  # on the bundled list of common passwords
    ):
        owner = {"email": "n@n.example", "password": password}
        response = await client.post("/v1/tenants", json={**body, "slug": "fresh", "owner": owner})
        assert response.status_code == 422, password
        assert problem(response)["code"] == code


async def test_sign_up_can_be_disabled(make_harness: Any) -> None:
    harness = await make_harness(auth={"signup_enabled": False})
    body = {"name": "A", "slug": "acme", "owner": {"email": "a@a.example", "password": PASSWORD}}
    response = await harness.client.post("/v1/tenants", json=body)
    assert response.status_code == 404
    assert problem(response)["code"] == "route.not_found"


async def test_refresh_rotates_and_reuse_revokes_the_family(harness: Harness) -> None:
    client = harness.client
    await sign_up(client, "acme")
    first = await log_in(client, "owner@acme.example")

    second = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert second.status_code == 200, second.text
    pair = second.json()
    assert pair["refresh_token"] != first["refresh_token"]
    assert second.headers["cache-control"] == "no-store"

    replay = await client.post("/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})
    assert replay.status_code == 401
    assert problem(replay)["code"] == "auth.refresh_reused"
    # The pair from the first refresh is dead too: the whole family was revoked.
    after = await client.post("/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]})
    assert after.status_code == 401
    assert (await client.get("/v1/me", headers=bearer(pair))).status_code == 401

    # A refresh token that cannot even be encoded is a 422, not a 500.
    odd = await client.post(
        "/v1/auth/refresh",
        content=b'{"refresh_token": "\\ud800"}',
        headers={"Content-Type": "application/json"},
    )
    assert odd.status_code == 422

    # A new login starts a new, healthy family.
    fresh = await log_in(client, "owner@acme.example")
    again = await client.post("/v1/auth/refresh", json={"refresh_token": fresh["refresh_token"]})
    assert again.status_code == 200


async def test_concurrent_refreshes_with_one_token_let_one_win_at_most(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    tokens = await log_in(harness.client, "owner@acme.example")
    body = {"refresh_token": tokens["refresh_token"]}
    responses = await asyncio.gather(
        *(harness.client.post("/v1/auth/refresh", json=body) for _ in range(5))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) <= 1
    assert set(statuses) <= {200, 401}


async def test_logout_revokes_the_family(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    tokens = await log_in(harness.client, "owner@acme.example")
    body = {"refresh_token": tokens["refresh_token"]}
    assert (await harness.client.post("/v1/auth/logout", json=body)).status_code == 204
    refused = await harness.client.post("/v1/auth/refresh", json=body)
    assert refused.status_code == 401
    assert problem(refused)["code"] == "auth.refresh_invalid"
    assert (await harness.client.get("/v1/me", headers=bearer(tokens))).status_code == 401
    # Unknown tokens log out quietly: nothing to end, nothing revealed.
    assert (
        await harness.client.post("/v1/auth/logout", json={"refresh_token": "nope"})
    ).status_code == 204


async def test_wrong_password_and_unknown_user_look_identical(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    wrong = await harness.client.post(
        "/v1/auth/token", data={"username": "owner@acme.example", "password": "not-the-password"}
    )
    unknown = await harness.client.post(
        "/v1/auth/token", data={"username": "nobody@acme.example", "password": "not-the-password"}
    )
    assert wrong.status_code == unknown.status_code == 401
    a, b = problem(wrong), problem(unknown)
    assert (a["code"], a["detail"], a["title"]) == (b["code"], b["detail"], b["title"])
    assert "www-authenticate" in wrong.headers


async def test_legacy_bcrypt_hash_logs_in_and_is_upgraded(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    legacy = bcrypt.hashpw(b"legacy-password-1", bcrypt.gensalt(rounds=4)).decode()
    harness.cluster.psql(
        "primary", f"UPDATE users SET password_hash = '{legacy}' WHERE email = 'owner@acme.example'"
    )
    await log_in(harness.client, "owner@acme.example", "legacy-password-1")
    stored = harness.cluster.psql(
        "primary", "SELECT password_hash FROM users WHERE email = 'owner@acme.example'"
    )
    assert stored.strip().startswith("$argon2id$")
    await log_in(harness.client, "owner@acme.example", "legacy-password-1")  # still works


async def test_overlong_login_password_is_422_not_500(harness: Harness) -> None:
    await sign_up(harness.client, "acme")
    response = await harness.client.post(
        "/v1/auth/token", data={"username": "owner@acme.example", "password": "x" * 200}
    )
    assert response.status_code == 422
    assert problem(response)["code"] == "request.invalid"
