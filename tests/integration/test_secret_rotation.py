"""Key rotation of tenant secrets: written under A, readable under [B, A]; after
`storefront secrets rotate-key`, readable under [B] alone. Bad keys fail in one line."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cryptography.fernet import Fernet

from app.secrets.service import fingerprint
from tests.conftest import Harness
from tests.integration.test_cli import storefront

KEY_A, KEY_B, KEY_C = (Fernet.generate_key().decode() for _ in range(3))


def _keys(*keys: str) -> str:
    return json.dumps(list(keys))


def _ciphertexts(harness: Harness) -> set[str]:
    rows = harness.cluster.psql("primary", "SELECT encode(ciphertext, 'hex') FROM tenant_secrets")
    return set(rows.split())


async def test_rotation_from_a_to_b(make_harness: Callable[..., Any]) -> None:
    old: Harness = await make_harness(secrets={"keys": [KEY_A]})
    tenants = [await old.container.tenant_service().create(f"t{i}-x", f"T{i}") for i in range(3)]
    written = {}
    for tenant in tenants:
        _, value = await old.container.webhook_secrets().generate(tenant.id)
        written[tenant.id] = value.get_secret_value()
    before = _ciphertexts(old)

    both: Harness = await make_harness(secrets={"keys": [KEY_B, KEY_A]})
    for tenant in tenants:  # new first, old still decrypts
        value = await both.container.webhook_secrets().signing_key(tenant.id)
        assert value.get_secret_value() == written[tenant.id]

    env = {"STOREFRONT_SECRETS__KEYS": _keys(KEY_B, KEY_A)}
    rotated = storefront(
        both, "secrets", "rotate-key", STOREFRONT_SECRETS__ROTATION_BATCH_SIZE="1", **env
    )
    assert rotated.returncode == 0, rotated.stderr
    assert "re-encrypted 3 secret(s) of 3 tenant(s)" in rotated.stdout
    after = _ciphertexts(both)
    assert after.isdisjoint(before)
    for hex_value in after:
        Fernet(KEY_B.encode()).decrypt(bytes.fromhex(hex_value))  # under B now

    again = storefront(both, "secrets", "rotate-key", **env)
    assert again.returncode == 0, again.stderr
    assert "re-encrypted 0 secret(s)" in again.stdout
    assert "3 already under it" in again.stdout

    new: Harness = await make_harness(secrets={"keys": [KEY_B]})
    for tenant in tenants:  # A retired
        value = await new.container.webhook_secrets().signing_key(tenant.id)
        assert value.get_secret_value() == written[tenant.id]
        info = await new.container.webhook_secrets().info(tenant.id)
        assert info.fingerprint == fingerprint(value)


async def test_rotate_key_with_a_wrong_key_fails_in_one_line(harness: Harness) -> None:
    tenant = await harness.container.tenant_service().create("acme", "Acme")
    await harness.container.webhook_secrets().generate(tenant.id)  # config/test.yaml's key
    before = _ciphertexts(harness)

    wrong = storefront(harness, "secrets", "rotate-key", STOREFRONT_SECRETS__KEYS=_keys(KEY_C))
    assert wrong.returncode == 1
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: secrets.undecryptable: 1 secret(s)")
    assert str(tenant.id) in lines[0]
    assert _ciphertexts(harness) == before  # nothing overwritten

    unset = storefront(harness, "secrets", "rotate-key", STOREFRONT_SECRETS__KEYS="[]")
    assert unset.returncode == 1
    assert unset.stderr.strip().startswith("error: secrets.not_configured")


async def test_invalid_key_setting_is_a_one_line_start_up_error(harness: Harness) -> None:
    bad = "not-a-fernet-key-0123456789"
    for command in (("config", "show"), ("serve", "--port", "1"), ("secrets", "rotate-key")):
        result = storefront(harness, *command, STOREFRONT_SECRETS__KEYS=_keys(KEY_A, bad))
        assert result.returncode == 1, command
        assert result.stderr.strip() == (
            "error: invalid settings: secrets.keys: Value error, [1] not a Fernet key"
            " (32 bytes, url-safe base64 encoded)"
        ), result.stderr
        assert bad not in result.stderr
        assert KEY_A not in result.stderr + result.stdout
