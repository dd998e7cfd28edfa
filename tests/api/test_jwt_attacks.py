"""Forged, altered and misused access tokens all get 401 problem+json (other tenants' ids: 404).

The service runs with asymmetric keys here (EdDSA and RS256), as production should.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.api.identity_helpers import bearer, log_in, sign_up
from tests.conftest import Harness, problem

ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(key: Any) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


KEYS = [
    {"kid": "ed-1", "algorithm": "EdDSA", "key": _pem(ED_KEY)},
    {"kid": "rsa-1", "algorithm": "RS256", "key": _pem(RSA_KEY)},
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return _b64(json.dumps(header).encode()) + "." + _b64(json.dumps(claims).encode())


@pytest.fixture
async def signed_in(make_harness: Any) -> tuple[Harness, dict[str, Any], dict[str, Any]]:
    harness: Harness = await make_harness(auth={"tokens": {"keys": KEYS}})
    await sign_up(harness.client, "acme")
    tokens = await log_in(harness.client, "owner@acme.example")
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    return harness, tokens, claims


async def _refused(harness: Harness, token: str) -> None:
    response = await harness.client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401, response.text
    body = problem(response)
    assert body["code"].startswith("auth.")
    assert "www-authenticate" in response.headers


async def test_the_genuine_token_works_and_is_signed_by_the_newest_key(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, tokens, claims = signed_in
    assert jwt.get_unverified_header(tokens["access_token"])["kid"] == "rsa-1"
    assert {"iss", "aud", "sub", "tid", "role", "exp", "iat", "nbf", "jti"} <= set(claims)
    assert (await harness.client.get("/v1/me", headers=bearer(tokens))).status_code == 200
    # Signed by the older key: still accepted (rotation logs no one out).
    old = jwt.encode(claims, ED_KEY, algorithm="EdDSA", headers={"kid": "ed-1"})
    assert (
        await harness.client.get("/v1/me", headers=bearer({"access_token": old}))
    ).status_code == 200


async def test_alg_none_is_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, _, claims = signed_in
    for header in (
        {"alg": "none", "kid": "rsa-1"},
        {"alg": "none"},
        {"alg": "None", "kid": "ed-1"},
    ):
        await _refused(harness, _unsigned(header, claims) + ".")


async def test_hs256_signed_with_the_public_key_is_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, _, claims = signed_in
    for kid, key in (("rsa-1", RSA_KEY), ("ed-1", ED_KEY)):
        signing_input = _unsigned({"alg": "HS256", "typ": "JWT", "kid": kid}, claims)
        mac = hmac.new(_public_pem(key), signing_input.encode(), hashlib.sha256).digest()
        await _refused(harness, signing_input + "." + _b64(mac))


@pytest.mark.parametrize(
    "change",
    [
        {"aud": "someone-else"},
        {"iss": "https://evil.example"},
        {"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200},
        {"nbf": int(time.time()) + 3600},
        {"iat": int(time.time()) + 3600},
        {"sub": "not-a-uuid"},
        {"role": "superuser"},
    ],
    ids=[
        "wrong-aud",
        "wrong-iss",
        "expired",
        "not-yet-valid",
        "issued-in-future",
        "bad-sub",
        "bad-role",
    ],
)
async def test_properly_signed_but_invalid_claims_are_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]], change: dict[str, Any]
) -> None:
    harness, _, claims = signed_in
    token = jwt.encode({**claims, **change}, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
    await _refused(harness, token)


async def test_missing_claims_are_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, _, claims = signed_in
    for claim in ("exp", "aud", "tid", "sub"):
        partial = {k: v for k, v in claims.items() if k != claim}
        token = jwt.encode(partial, RSA_KEY, algorithm="RS256", headers={"kid": "rsa-1"})
        await _refused(harness, token)


async def test_unknown_kid_and_foreign_keys_are_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, _, claims = signed_in
    stranger = ed25519.Ed25519PrivateKey.generate()
    await _refused(
        harness, jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "ed-9"})
    )
    # A known kid with someone else's key: the signature does not verify.
    await _refused(
        harness, jwt.encode(claims, stranger, algorithm="EdDSA", headers={"kid": "ed-1"})
    )
    await _refused(harness, jwt.encode(claims, stranger, algorithm="EdDSA"))  # no kid at all


async def test_tampered_payload_is_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, tokens, claims = signed_in
    header, _, signature = tokens["access_token"].split(".")
    forged = _b64(json.dumps({**claims, "tid": str(uuid.uuid4())}).encode())
    await _refused(harness, f"{header}.{forged}.{signature}")
    for garbage in ("x", "a.b.c", tokens["access_token"][:-4], "Bearer"):
        await _refused(harness, garbage)


async def test_token_of_a_deleted_user_is_refused(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, owner_tokens, _ = signed_in
    created = await harness.client.post(
        "/v1/users",
        json={"email": "temp@acme.example", "password": "temporary-pass-1", "role": "member"},
        headers=bearer(owner_tokens),
    )
    assert created.status_code == 201, created.text
    member = await log_in(harness.client, "temp@acme.example", "temporary-pass-1")
    assert (await harness.client.get("/v1/me", headers=bearer(member))).status_code == 200
    deleted = await harness.client.delete(
        f"/v1/users/{created.json()['id']}", headers=bearer(owner_tokens)
    )
    assert deleted.status_code == 204
    await _refused(harness, member["access_token"])


async def test_another_tenants_token_cannot_reach_this_tenants_ids(
    signed_in: tuple[Harness, dict[str, Any], dict[str, Any]],
) -> None:
    harness, acme_tokens, _ = signed_in
    product = await harness.client.post(
        "/v1/products",
        json={"sku": "A-1", "name": "Anvil", "price": {"amount": 100, "currency": "EUR"}},
        headers=bearer(acme_tokens),
    )
    assert product.status_code == 201, product.text
    await sign_up(harness.client, "globex")
    globex = await log_in(harness.client, "owner@globex.example")
    user_id = (await harness.client.get("/v1/me", headers=bearer(acme_tokens))).json()["id"]
    for method, path in (
        ("GET", f"/v1/products/{product.json()['id']}"),
        ("PATCH", f"/v1/users/{user_id}"),
        ("DELETE", f"/v1/users/{user_id}"),
    ):
        body = {"role": "viewer"} if method == "PATCH" else None
        response = await harness.client.request(method, path, json=body, headers=bearer(globex))
        assert response.status_code == 404, (method, path, response.text)
        assert problem(response)["code"].endswith("not_found")
