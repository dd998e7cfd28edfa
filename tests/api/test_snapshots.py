"""Contract snapshots: one scripted tour of every route, every response recorded (status,
headers, body) with ids, times and secrets normalised, and compared with the checked-in file.

`tests/api/snapshots/2026-11-23.json` was recorded before API versions existed (issue 12): it is
the contract of version 2026-11-23, and a tenant pinned to it must keep getting exactly this.
Refresh a snapshot deliberately with `SNAPSHOT_UPDATE=1 pytest tests/api/test_snapshots.py`
(only for a version that has not shipped; a released version's file never changes).
"""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.versions import FIRST, NEWEST, VERSIONS
from app.versions.openapi_diff import breaking
from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import OPERATOR_TOKEN, Harness

SNAPSHOTS = Path(__file__).parent / "snapshots"
FIRST_VERSION = "2026-11-23"

# Header values that differ run to run; their names are still recorded.
_VOLATILE_HEADERS = {
    "date",
    "x-request-id",
    "x-consistency-token",
    "ratelimit",
    "ratelimit-policy",
    "content-length",
    "etag",
    "location",
    "retry-after",
    "set-cookie",
}
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?")
_SECRET = re.compile(
    r"(sf_(live|test)_[A-Za-z0-9_\-]+|sfr_[A-Za-z0-9_\-]+|eyJ[A-Za-z0-9_\-.]+|whsec_[A-Za-z0-9_\-]+)"
)
_HEX = re.compile(r"\b(auth_)?([0-9a-f]{32}|[0-9a-f]{16})\b")


class Normaliser:
    """Replaces each distinct id by `<id:N>` (N in order of first sight), so relations between
    responses stay visible (the order's product is the product created before)."""

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}

    def text(self, value: str) -> str:
        value = _UUID.sub(self._id, value)
        value = _TIME.sub("<time>", value)
        value = _SECRET.sub("<secret>", value)
        return _HEX.sub("<hex>", value)

    def _id(self, match: re.Match[str]) -> str:
        return self.ids.setdefault(match[0], f"<id:{len(self.ids) + 1}>")

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(x) for x in value]
        if isinstance(value, dict):
            return {k: self.value(v) for k, v in value.items()}
        return value

    def response(self, label: str, response: httpx.Response, body: bool = True) -> dict[str, Any]:
        headers = {
            name: ("<volatile>" if name in _VOLATILE_HEADERS else self.text(value))
            for name, value in sorted(response.headers.items())
        }
        recorded: dict[str, Any] = {
            "request": f"{response.request.method} {self.text(response.request.url.path)}",
            "status": response.status_code,
            "headers": headers,
        }
        if body and response.content:
            try:
                recorded["body"] = self.value(response.json())
            except ValueError:
                recorded["body"] = self.text(response.text)
        return {"step": label, **recorded}


async def tour(
    client: httpx.AsyncClient,
    harness: Harness,
    *,
    pin: str | None = None,
    header: str | None = None,
) -> list[Any]:
    """Every route once (the failures that have their own shape too), in a fixed order, as a
    tenant signed up (so pinned to the newest version) and then pinned to `pin` by an operator,
    with `Storefront-Version: <header>` on every request when given."""
    if header is not None:
        client.headers["Storefront-Version"] = header
    n = Normaliser()
    out: list[Any] = []

    async def step(label: str, response: httpx.Response, body: bool = True) -> httpx.Response:
        out.append(n.response(label, response, body))
        return response

    await step("health live", await client.get("/health/live"))
    await step("health ready", await client.get("/health/ready"), body=False)  # live numbers
    signed = await sign_up(client, "snap")
    if pin is not None:  # as `storefront tenants api-version snap <pin>` does (not recorded)
        await harness.container.tenancy_service().pin_api_version("snap", pin)
    out.append({"step": "sign up", "body": n.value(signed)})
    tokens = await log_in(client, "owner@snap.example")
    out.append({"step": "log in", "body": n.value(tokens)})
    owner = bearer(tokens)
    await step("me", await client.get("/v1/me", headers=owner))
    refreshed = await step(
        "refresh",
        await client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}),
    )
    owner = bearer(refreshed.json())
    await step("me unauthenticated", await client.get("/v1/me"))

    created = await step("create user", await client.post(
        "/v1/users",
        json={"email": "member@snap.example", "password": PASSWORD, "role": "member"},
        headers=owner,
    ))  # fmt: skip
    user_id = created.json()["id"]
    await step("list users", await client.get("/v1/users", headers=owner))
    await step("update user", await client.patch(
        f"/v1/users/{user_id}", json={"role": "viewer"}, headers=owner
    ))  # fmt: skip
    await step("delete user", await client.delete(f"/v1/users/{user_id}", headers=owner))

    key = await step("create api key", await client.post(
        "/v1/api-keys",
        json={"name": "shop", "scopes": ["catalog:read", "catalog:write", "orders:read",
                                         "orders:write", "reports:read"]},
        headers=owner,
    ))  # fmt: skip
    key_id = key.json()["id"]
    rotated = await step(
        "rotate api key", await client.post(f"/v1/api-keys/{key_id}/rotate", headers=owner)
    )
    shop = {"X-API-Key": rotated.json()["secret"]}
    await step("list api keys", await client.get("/v1/api-keys", headers=owner))

    product = await step("create product", await client.post(
        "/v1/products",
        json={"sku": "MUG-1", "name": "Mug", "price": {"amount": 1299, "currency": "EUR"},
              "stock": 10},
        headers=shop,
    ))  # fmt: skip
    product_id = product.json()["id"]
    strong = {**shop, "X-Read-Consistency": "strong"}
    await step("get product", await client.get(f"/v1/products/{product_id}", headers=strong))
    await step("get product not modified", await client.get(
        f"/v1/products/{product_id}", headers={**strong, "If-None-Match": product.headers["etag"]}
    ))  # fmt: skip
    await step("update product", await client.patch(
        f"/v1/products/{product_id}",
        json={"name": "Big mug"},
        headers={**shop, "If-Match": product.headers["etag"]},
    ))  # fmt: skip
    await step("update product stale", await client.patch(
        f"/v1/products/{product_id}",
        json={"name": "Huge mug"},
        headers={**shop, "If-Match": product.headers["etag"]},
    ))  # fmt: skip
    await step("adjust stock", await client.post(
        f"/v1/products/{product_id}/stock-adjustments",
        json={"delta": 5, "reason": "restock"},
        headers=shop,
    ))  # fmt: skip
    await step("list products", await client.get("/v1/products", headers=strong))
    await step("product invalid", await client.post(
        "/v1/products", json={"sku": "", "name": "x", "price": {"amount": 1}}, headers=shop
    ))  # fmt: skip
    await step("product missing", await client.get(f"/v1/products/{uuid.UUID(int=1)}",
                                                   headers=strong))  # fmt: skip

    order_body = {
        "items": [{"product_id": product_id, "quantity": 2}],
        "payment": {"token": "tok_ok"},
    }
    keyed = {**shop, "Idempotency-Key": "snap-order-1"}
    order = await step("place order", await client.post("/v1/orders", json=order_body,
                                                        headers=keyed))  # fmt: skip
    order_id = order.json()["id"]
    await step("replay order", await client.post("/v1/orders", json=order_body, headers=keyed))
    await step("order key reused", await client.post(
        "/v1/orders", json={**order_body, "payment": {"token": "tok_declined"}}, headers=keyed
    ))  # fmt: skip
    await step("order declined", await client.post(
        "/v1/orders",
        json={**order_body, "payment": {"token": "tok_declined"}},
        headers={**shop, "Idempotency-Key": "snap-order-2"},
    ))  # fmt: skip
    await step("order without key", await client.post("/v1/orders", json=order_body,
                                                      headers=shop))  # fmt: skip
    await step("order too many", await client.post(
        "/v1/orders",
        json={**order_body, "items": [{"product_id": product_id, "quantity": 999}]},
        headers={**shop, "Idempotency-Key": "snap-order-3"},
    ))  # fmt: skip
    await step("get order", await client.get(f"/v1/orders/{order_id}", headers=strong))
    await step("list orders", await client.get("/v1/orders", headers=strong))
    await step("cancel order", await client.post(f"/v1/orders/{order_id}/cancel", headers=shop))
    await step("cancel order again", await client.post(f"/v1/orders/{order_id}/cancel",
                                                       headers=shop))  # fmt: skip
    await step("sales report", await client.get(
        "/v1/reports/sales", params={"from": "2026-01-01", "to": "2026-01-31"}, headers=strong
    ))  # fmt: skip
    await step("sales report invalid", await client.get("/v1/reports/sales", headers=strong))
    await step("features", await client.get("/v1/features", headers=shop))
    await step("webhook secret missing", await client.get("/v1/webhook-secret", headers=owner))
    await step("create webhook secret", await client.post("/v1/webhook-secret", headers=owner))
    await step("webhook secret", await client.get("/v1/webhook-secret", headers=owner))
    await step("delete api key", await client.delete(f"/v1/api-keys/{key_id}", headers=owner))
    await step("log out", await client.post(
        "/v1/auth/logout", json={"refresh_token": refreshed.json()["refresh_token"]}
    ))  # fmt: skip
    await step("refresh reused", await client.post(
        "/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    ))  # fmt: skip
    await step("unknown route", await client.get("/v1/nope"))
    await step("wrong method", await client.delete("/v1/products", headers=shop))
    operator = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    tenant_id = signed["tenant"]["id"] if "tenant" in signed else signed["id"]
    # Ops and metrics carry live numbers: their status and headers are the contract.
    await step("ops db", await client.get("/ops/db", headers=operator), body=False)
    await step("ops tenant", await client.get(f"/ops/tenants/{tenant_id}", headers=operator),
               body=False)  # fmt: skip
    await step("metrics", await client.get("/metrics"), body=False)
    return out


def _check(name: str, recorded: list[Any], *, without: str | None = None) -> None:
    """`recorded` against the checked-in `<name>.json`; `without` names a response header to
    leave out of the comparison (after checking every response carries it)."""
    if without is not None:
        for step in recorded:
            if "headers" in step:
                assert without in step["headers"], (step["step"], "no", without)
                del step["headers"][without]
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("SNAPSHOT_UPDATE") == "1" or not path.exists():
        assert os.environ.get("CI") is None, f"{path} is missing: record it locally"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, f"{path.name}: the contract changed (diff the file to see how)"


# The first version's snapshot was recorded before versions existed, so without the header that
# now says which version served each response: the one difference allowed (an added response
# header breaks no client), checked present on every response and then left out.
_SERVED = "storefront-version"


async def test_a_tenant_pinned_to_the_first_version_keeps_its_recorded_contract(
    harness: Harness,
) -> None:
    _check(FIRST_VERSION, await tour(harness.client, harness, pin=FIRST_VERSION), without=_SERVED)


async def test_the_first_version_by_header_whatever_the_pin(harness: Harness) -> None:
    """A tenant on the newest version that sends `Storefront-Version: 2026-11-23`."""
    recorded = await tour(harness.client, harness, header=FIRST_VERSION)
    assert {step["headers"][_SERVED] for step in recorded if "headers" in step} == {FIRST_VERSION}
    _check(FIRST_VERSION, recorded, without=_SERVED)


async def test_the_newest_version_keeps_its_recorded_contract(harness: Harness) -> None:
    """Recorded when the version was made; a tenant signed up now is on it."""
    recorded = await tour(harness.client, harness)
    served = {step["headers"][_SERVED] for step in recorded if "headers" in step}
    assert served == {NEWEST.name}
    _check(NEWEST.name, recorded)


async def test_the_newest_shape_by_header_for_a_tenant_pinned_to_the_first(
    harness: Harness,
) -> None:
    _check(NEWEST.name, await tour(harness.client, harness, pin=FIRST_VERSION, header=NEWEST.name))


async def _document(harness: Harness, version: str) -> dict[str, Any]:
    served = await harness.client.get("/openapi.json", params={"version": version})
    assert served.status_code == 200
    assert served.headers[_SERVED] == version
    document: dict[str, Any] = served.json()
    return document


@pytest.mark.parametrize("version", [v.name for v in VERSIONS])
async def test_each_versions_openapi_document_breaks_nothing_it_published(
    harness: Harness, version: str
) -> None:
    """The document of every version against the one recorded when it was released
    (`openapi-<version>.json`): additions pass, anything breaking fails the build."""
    document = await _document(harness, version)
    path = SNAPSHOTS / f"openapi-{version}.json"
    if not path.exists():
        assert os.environ.get("CI") is None, f"{path} is missing: record it locally"
        path.write_text(json.dumps(document, indent=1) + "\n")
    assert breaking(json.loads(path.read_text()), document) == []


async def test_the_openapi_diff_fails_on_a_removed_response_field(harness: Harness) -> None:
    """The test of the test: a response field removed, a request field newly required and a
    narrowed parameter are each caught."""
    published = await _document(harness, NEWEST.name)
    changed = json.loads(json.dumps(published))
    schemas = changed["components"]["schemas"]
    del schemas["OrderRead"]["properties"]["created_at"]
    schemas["ProductCreate"]["required"].append("description")
    limit = next(
        p for p in changed["paths"]["/v1/orders"]["get"]["parameters"] if p.get("name") == "limit"
    )
    limit["schema"]["maximum"] = 10
    schemas["ProductRead"]["properties"]["sku"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    changed["paths"]["/v1/features"]["get"]["security"] = [{"OAuth2PasswordBearer": []}]
    found = breaking(published, changed)
    assert "POST /v1/products 201 body.sku: may now be null" in found
    assert "GET /v1/features: no longer accepts APIKeyHeader" in found
    # (a schema shared by several operations is reported once, where it is first met)
    assert "POST /v1/orders 201 body: property created_at removed" in found
    assert "POST /v1/products request: property description now required" in found
    assert "GET /v1/orders query parameter limit: maximum lowered" in found


async def test_the_versions_differ_by_their_changes_exactly(harness: Harness) -> None:
    """From the first version to the newest, what breaks is what the changelog says."""
    first, newest = await _document(harness, FIRST.name), await _document(harness, NEWEST.name)
    assert breaking(first, newest) == ["POST /v1/orders 201 body: property items removed"]
