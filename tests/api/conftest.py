"""Fixtures of the API tests that talk to a real `storefront serve` process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from app.devcluster import LocalCluster
from app.identity.keys import hash_secret, new_secret
from app.identity.permissions import SCOPES
from tests.served_app import serve_cli


@pytest.fixture(scope="session")
def served(cluster: LocalCluster) -> Iterator[str]:
    # SSO set up on the server (each tenant still configures its own provider): without it
    # every SSO login is a deliberate 503 sso.server_not_configured, which the fuzzers count as
    # a server error.
    sso = {"STOREFRONT_SSO__REDIRECT_URI": "http://127.0.0.1/v1/auth/sso/callback"}
    with serve_cli(cluster, env=sso) as base:
        yield base


@pytest.fixture
def api_key(cluster: LocalCluster) -> str:
    """A tenant with a full-scope key and a product, inserted directly (fast, per test)."""
    secret = new_secret()
    digest = hash_secret(secret).hex()
    scopes = ", ".join(f"'{scope}'" for scope in sorted(SCOPES))
    tenant = uuid.uuid4()
    cluster.psql(
        "primary",
        f"INSERT INTO tenants (id, slug, name) VALUES ('{tenant}', 'fuzz', 'Fuzz');"
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes) VALUES"
        f" (gen_random_uuid(), '{tenant}', 'fuzz', 'sf_live_fuzz', '\\x{digest}',"
        f" ARRAY[{scopes}]);"
        "INSERT INTO products (id, tenant_id, sku, name, price_amount, price_currency, stock)"
        f" VALUES (gen_random_uuid(), '{tenant}', 'FUZZ-1', 'Fuzz', 100, 'EUR', 5)",
    )
    return secret
