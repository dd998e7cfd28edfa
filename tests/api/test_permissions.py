"""The role matrix: every route x every role and every single-scope API key gets exactly the
2xx / 403 that the permission table (app/identity/permissions.py) says.

Each route's requirement is declared here on its own, so a route guarded by the wrong
permission fails this test even though both sides use the same table.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from pydantic import SecretStr

from app.core.money import Money
from app.devcluster import LocalCluster
from app.http.etags import etag
from app.identity.permissions import SCOPES, TABLE, Permission, Role
from app.sso.service import SsoConfigInput
from tests.conftest import Harness, close_harness, open_harness

P = Permission


@dataclass(frozen=True)
class Case:
    method: str
    path: str
    needs: frozenset[Permission]  # empty: any authenticated caller
    body: dict[str, Any] | None = None


def _case(method: str, path: str, *needs: Permission, body: Any = None) -> Case:
    return Case(method, path, frozenset(needs), body)


def role(name: str) -> tuple[Permission, ...]:
    """Giving a role, or changing a user of that role, needs all the role's permissions."""
    return tuple(p for p, (least, _) in TABLE.items() if Role[name] >= least)


SSO_CONFIG = {
    "issuer": "https://login.acme.example",
    "client_id": "storefront",
    "client_secret": "a-client-secret",
    "allowed_domains": ["acme.example"],
}
PRODUCT = {"sku": "NEW-1", "name": "New", "price": {"amount": 1, "currency": "EUR"}}
CASES = [
    _case("GET", "/v1/me"),
    _case("GET", "/v1/api-version"),
    _case("PUT", "/v1/api-version", P.API_VERSION_PIN, body={"version": "2026-11-23"}),
    _case("GET", "/v1/features"),
    _case("GET", "/v1/products", P.CATALOG_READ),
    _case("POST", "/v1/products", P.CATALOG_WRITE, body=PRODUCT),
    _case("GET", "/v1/products/{product}", P.CATALOG_READ),
    _case("PATCH", "/v1/products/{product}", P.CATALOG_WRITE, body={"name": "Renamed"}),
    _case(
        "POST",
        "/v1/products/{product}/stock-adjustments",
        P.CATALOG_WRITE,
        body={"delta": 1, "reason": "count"},
    ),
    _case("GET", "/v1/users", P.USERS_READ),
    _case(
        "POST",
        "/v1/users",
        P.USERS_MANAGE,
        *role("member"),
        body={"email": "new@acme.example", "password": "a-new-password-1", "role": "member"},
    ),
    _case(
        "POST",
        "/v1/users",
        P.USERS_MANAGE,
        *role("owner"),
        body={"email": "boss@acme.example", "password": "a-new-password-1", "role": "owner"},
    ),
    _case("PATCH", "/v1/users/{member}", P.USERS_MANAGE, *role("member"), body={"role": "viewer"}),
    _case("PATCH", "/v1/users/{member}", P.USERS_MANAGE, *role("owner"), body={"role": "owner"}),
    _case(
        "PATCH",
        "/v1/users/{owner}",
        P.USERS_MANAGE,
        *role("owner"),
        body={"password": "a-new-password-2"},
    ),
    _case("DELETE", "/v1/users/{member}", P.USERS_MANAGE),
    _case("GET", "/v1/api-keys", P.API_KEYS_READ),
    # Granting a scope needs every permission the scope gives: catalog:read -> catalog.read.
    _case(
        "POST",
        "/v1/api-keys",
        P.API_KEYS_MANAGE,
        P.CATALOG_READ,
        body={"name": "new", "scopes": ["catalog:read"]},
    ),
    _case("POST", "/v1/api-keys/{key}/rotate", P.API_KEYS_MANAGE, P.CATALOG_READ, body={}),
    _case("DELETE", "/v1/api-keys/{key}", P.API_KEYS_DELETE),
    _case("GET", "/v1/webhook-secret", P.API_KEYS_READ),
    _case("POST", "/v1/webhook-secret", P.API_KEYS_MANAGE),
    _case("GET", "/v1/orders", P.ORDERS_READ),
    _case("GET", "/v1/orders/{order}", P.ORDERS_READ),
    _case(
        "POST",
        "/v1/orders",
        P.ORDERS_WRITE,
        body={
            "items": [{"product_id": "{product}", "quantity": 1}],
            "payment": {"token": "tok_ok"},
        },
    ),
    _case("POST", "/v1/orders/{order}/cancel", P.ORDERS_WRITE),
    _case("POST", "/v1/ws-tickets", P.ORDERS_WATCH),
    _case("GET", "/v1/reports/sales?from=2026-01-01&to=2026-01-31", P.REPORTS_READ),
    _case("GET", "/v1/sso-config", P.SSO_MANAGE),
    _case("PUT", "/v1/sso-config", P.SSO_MANAGE, body=SSO_CONFIG),
]
SSO_SETUP = SsoConfigInput(
    "https://login.acme.example", "storefront", ["acme.example"], Role.member, False, False
)
PRINCIPALS = [f"role:{role.name}" for role in Role] + [f"scope:{s}" for s in sorted(SCOPES)]


def granted(principal: str) -> frozenset[Permission]:
    """What the table grants, read straight from it."""
    kind, name = principal.split(":", 1)
    if kind == "role":
        return frozenset(p for p, (least, _) in TABLE.items() if Role[name] >= least)
    return frozenset(p for p, (_, scope) in TABLE.items() if scope == name)


async def _credentials(harness: Harness, tenant_id: uuid.UUID, principal: str) -> dict[str, str]:
    kind, name = principal.split(":", 1)
    if kind == "scope":
        _, secret = await harness.container.api_key_service().issue(tenant_id, "p", [name])
        return {"X-API-Key": secret}
    if name == "owner":
        email = "owner@acme.example"  # the tenant's owner itself
    else:
        email = f"{name}@acme.example"
        await harness.container.user_service().create(
            tenant_id, email, "a-long-password-1", Role[name]
        )
    tokens = await harness.container.auth_service().login(email, "a-long-password-1", "10.0.0.1")
    return {"Authorization": f"Bearer {tokens.access_token}"}


@pytest.fixture(scope="module")
async def matrix(cluster: LocalCluster) -> AsyncIterator[Harness]:
    """One app for the whole matrix (building one per case would be most of its run time);
    every case still starts from empty tables and creates its own data."""
    harness = await open_harness(cluster)
    yield harness
    await close_harness(harness)


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c.method} {c.path} {sorted(c.needs)}")
async def test_route_allows_exactly_what_the_table_says(
    matrix: Harness, case: Case, principal: str
) -> None:
    harness = matrix
    container = harness.container
    tenant = await container.tenant_service().create("acme", "Acme")
    owner = await container.user_service().create(
        tenant.id, "owner@acme.example", "a-long-password-1", Role.owner
    )
    member = await container.user_service().create(
        tenant.id, "member-target@acme.example", "a-long-password-1", Role.member
    )
    product = await container.catalog_service().create(
        tenant.id, "SKU-1", "Thing", None, Money(100, "EUR"), 5
    )
    key, _ = await container.api_key_service().issue(tenant.id, "target", ["catalog:read"])
    await container.webhook_secrets().generate(tenant.id)
    await container.sso_config_service().put(tenant.id, SSO_SETUP, SecretStr("a-client-secret"))
    sold = await container.catalog_service().create(  # orders leave `product` untouched
        tenant.id, "SKU-2", "Other", None, Money(100, "EUR"), 5
    )
    order = await container.order_service().place(
        tenant.id, "setup", b"fp", [(sold.id, 1)], "tok_ok"
    )
    headers = await _credentials(harness, tenant.id, principal)
    headers["X-Read-Consistency"] = "strong"  # the setup above was written a moment ago
    if case.method == "PATCH" and "products" in case.path:
        headers["If-Match"] = etag(product.version)
    ids = {"product": product.id, "member": member.id, "owner": owner.id, "key": key.id}
    assert order.order is not None
    path = case.path.format(**ids, order=order.order.id)
    if case.path == "/v1/orders":
        headers["Idempotency-Key"] = "matrix"
    body = case.body
    if body and "items" in body:
        body = {**body, "items": [{"product_id": str(sold.id), "quantity": 1}]}

    response = await harness.client.request(case.method, path, json=body, headers=headers)

    allowed = case.needs <= granted(principal)
    if allowed:
        assert 200 <= response.status_code < 300, response.text
    else:
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "auth.insufficient_scope"
