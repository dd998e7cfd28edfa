"""The tenant's webhook signing secret over HTTP: stored encrypted (Fernet, secrets.keys),
shown once, never again; a server without the right key answers with a stable 503."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet

from app.identity.permissions import Role
from app.secrets.errors import SecretUndecryptable
from app.secrets.service import fingerprint
from app.settings import load_settings
from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import Harness, problem

KEY_A = Fernet.generate_key().decode()
KEY_C = Fernet.generate_key().decode()


async def _owner(harness: Harness, slug: str = "acme") -> dict[str, Any]:
    signed = await sign_up(harness.client, slug)
    tokens = await log_in(harness.client, f"owner@{slug}.example")
    return {"tenant_id": signed["tenant"]["id"], "headers": bearer(tokens)}


def _raw_ciphertext(harness: Harness) -> bytes:
    """The stored value as the database holds it (superuser: row-level security bypassed)."""
    hex_value = harness.cluster.psql(
        "primary", "SELECT encode(ciphertext, 'hex') FROM tenant_secrets"
    )
    return bytes.fromhex(hex_value)


async def test_secret_is_shown_once_stored_encrypted_and_never_shown_again(
    harness: Harness,
) -> None:
    owner = await _owner(harness)
    missing = await harness.client.get("/v1/webhook-secret", headers=owner["headers"])
    assert missing.status_code == 404
    assert problem(missing)["code"] == "secrets.not_found"

    created = await harness.client.post("/v1/webhook-secret", headers=owner["headers"])
    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    body = created.json()
    secret = body["secret"]
    assert secret.startswith("whsec_")
    assert len(secret) > 40
    assert set(body) == {"secret", "fingerprint", "created_at", "updated_at"}

    stored = _raw_ciphertext(harness)
    assert secret.encode() not in stored
    assert secret[6:].encode() not in stored
    key = load_settings().secrets.keys[0].get_secret_value()  # config/test.yaml's key
    assert Fernet(key.encode()).decrypt(stored).decode() == secret  # Fernet, not garbage

    shown = await harness.client.get("/v1/webhook-secret", headers=owner["headers"])
    assert shown.status_code == 200, shown.text
    assert set(shown.json()) == {"fingerprint", "created_at", "updated_at"}
    assert secret not in shown.text
    assert secret[6:] not in shown.text
    assert shown.json()["fingerprint"] == body["fingerprint"]

    # Services get the value itself (for signing webhooks), masked in any repr.
    value = await harness.container.webhook_secrets().signing_key(uuid.UUID(owner["tenant_id"]))
    assert value.get_secret_value() == secret
    assert secret not in repr(value)
    assert secret not in str(value)

    # A new one replaces it at once; created_at is that of the first.
    again = await harness.client.post("/v1/webhook-secret", headers=owner["headers"])
    assert again.status_code == 201
    assert again.json()["secret"] != secret
    assert again.json()["created_at"] == body["created_at"]
    assert again.json()["fingerprint"] != body["fingerprint"]


async def test_admin_may_viewer_may_not_and_tenants_are_isolated(harness: Harness) -> None:
    acme = await _owner(harness, "acme")
    other = await _owner(harness, "other")
    await harness.container.user_service().create(
        uuid.UUID(acme["tenant_id"]), "viewer@acme.example", PASSWORD, Role.viewer
    )
    viewer = bearer(await log_in(harness.client, "viewer@acme.example"))
    assert (await harness.client.post("/v1/webhook-secret", headers=viewer)).status_code == 403
    assert (await harness.client.get("/v1/webhook-secret", headers=viewer)).status_code == 403

    created = await harness.client.post("/v1/webhook-secret", headers=acme["headers"])
    assert created.status_code == 201
    # The other tenant sees no secret (its own is absent; acme's is invisible under RLS).
    theirs = await harness.client.get("/v1/webhook-secret", headers=other["headers"])
    assert theirs.status_code == 404


async def test_wrong_key_is_a_stable_503_not_garbage(
    make_harness: Callable[..., Any],
) -> None:
    writer: Harness = await make_harness(secrets={"keys": [KEY_A]})
    owner = await _owner(writer)
    created = await writer.client.post("/v1/webhook-secret", headers=owner["headers"])
    assert created.status_code == 201

    # The same database, served with a key that never wrote it (the last app built is wired).
    wrong: Harness = await make_harness(secrets={"keys": [KEY_C]})
    headers = bearer(await log_in(wrong.client, "owner@acme.example"))  # its own signing key
    response = await wrong.client.get("/v1/webhook-secret", headers=headers)
    assert response.status_code == 503, response.text
    assert problem(response)["code"] == "secrets.undecryptable"
    assert response.headers["retry-after"]
    with pytest.raises(SecretUndecryptable):
        await wrong.container.webhook_secrets().signing_key(uuid.UUID(owner["tenant_id"]))
    # The writer's own services (key A) still read it.
    value = await writer.container.webhook_secrets().signing_key(uuid.UUID(owner["tenant_id"]))
    assert fingerprint(value) == created.json()["fingerprint"]


async def test_no_key_configured_is_a_clear_503(make_harness: Callable[..., Any]) -> None:
    harness: Harness = await make_harness(secrets={"keys": []})
    owner = await _owner(harness)
    response = await harness.client.post("/v1/webhook-secret", headers=owner["headers"])
    assert response.status_code == 503
    assert problem(response)["code"] == "secrets.not_configured"
    assert harness.cluster.psql("primary", "SELECT count(*) FROM tenant_secrets") == "0"
