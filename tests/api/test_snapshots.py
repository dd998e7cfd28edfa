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


async def tour(client: httpx.AsyncClient, harness: Harness, version: str | None) -> list[Any]:
    """Every route once (the failures that have their own shape too), in a fixed order."""
    if version is not None:
        client.headers["Storefront-Version"] = version
    n = Normaliser()
    out: list[Any] = []

    async def step(label: str, response: httpx.Response, body: bool = True) -> httpx.Response:
        out.append(n.response(label, response, body))
        return response

    await step("health live", await client.get("/health/live"))
    await step("health ready", await client.get("/health/ready"), body=False)  # live numbers
    signed = await sign_up(client, "snap")
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


def _check(name: str, recorded: list[Any]) -> None:
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(recorded, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    if os.environ.get("SNAPSHOT_UPDATE") == "1" or not path.exists():
        assert os.environ.get("CI") is None, f"{path} is missing: record it locally"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    expected = path.read_text()
    assert text == expected, f"{path.name}: the contract changed (diff the file to see how)"


async def test_the_first_version_keeps_its_recorded_contract(harness: Harness) -> None:
    _check(FIRST_VERSION, await tour(harness.client, harness, None))


async def test_the_first_versions_openapi_document_is_unchanged(harness: Harness) -> None:
    """The document served for 2026-11-23 is the one recorded before versions existed, byte
    for byte (the file holds the exact bytes served)."""
    served = await harness.client.get("/openapi.json")
    assert served.status_code == 200
    path = SNAPSHOTS / f"openapi-{FIRST_VERSION}.json"
    if os.environ.get("SNAPSHOT_UPDATE") == "1" or not path.exists():
        assert os.environ.get("CI") is None, f"{path} is missing: record it locally"
        path.write_bytes(served.content)
    assert served.content == path.read_bytes(), f"{path.name}: the published contract changed"
