"""Catalog endpoints over HTTP against the real primary + replica."""

from __future__ import annotations

import uuid
from typing import Any, get_args

from app.http.security import CatalogReader
from app.identity.principal import Principal
from tests.conftest import Harness, problem

SHIRT = {"sku": "TSHIRT-M", "name": "T-shirt", "price": {"amount": 1299, "currency": "EUR"}}


async def create(harness: Harness, **fields: Any) -> dict[str, Any]:
    response = await harness.client.post("/v1/products", json={**SHIRT, "stock": 5, **fields})
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_create_returns_location_etag_and_consistency_token(
    harness: Harness, acme: dict[str, Any]
) -> None:
    response = await harness.client.post("/v1/products", json={**SHIRT, "stock": 3})
    assert response.status_code == 201
    body = response.json()
    assert response.headers["location"] == f"/v1/products/{body['id']}"
    assert response.headers["etag"] == '"v1"'
    assert "/" in response.headers["x-consistency-token"]
    assert body["price"] == {"amount": 1299, "currency": "EUR"}
    assert body["stock"] == 3
    assert body["version"] == 1


async def test_get_with_etag_and_304(harness: Harness, acme: dict[str, Any]) -> None:
    product = await create(harness)
    response = await harness.client.get(f"/v1/products/{product['id']}")
    assert response.status_code == 200
    assert response.json()["sku"] == "TSHIRT-M"
    tag = response.headers["etag"]
    again = await harness.client.get(
        f"/v1/products/{product['id']}", headers={"If-None-Match": tag}
    )
    assert again.status_code == 304
    assert again.headers["etag"] == tag
    assert again.content == b""
    other = await harness.client.get(
        f"/v1/products/{product['id']}", headers={"If-None-Match": '"v99"'}
    )
    assert other.status_code == 200


async def test_patch_requires_if_match_and_rejects_stale(
    harness: Harness, acme: dict[str, Any]
) -> None:
    product = await create(harness)
    url = f"/v1/products/{product['id']}"
    missing = await harness.client.patch(url, json={"name": "New"})
    assert missing.status_code == 428
    assert problem(missing)["code"] == "precondition.required"

    ok = await harness.client.patch(url, json={"name": "New"}, headers={"If-Match": '"v1"'})
    assert ok.status_code == 200, ok.text
    assert ok.json()["name"] == "New"
    assert ok.headers["etag"] == '"v2"'

    stale = await harness.client.patch(url, json={"name": "Newer"}, headers={"If-Match": '"v1"'})
    assert stale.status_code == 412
    assert problem(stale)["code"] == "catalog.version_mismatch"

    weak = await harness.client.patch(url, json={"name": "X"}, headers={"If-Match": 'W/"v2"'})
    assert weak.status_code == 412  # If-Match uses the strong comparison

    cleared = await harness.client.patch(
        url,
        json={"description": None, "price": {"amount": 5, "currency": "USD"}},
        headers={"If-Match": '"v2"'},
    )
    assert cleared.status_code == 200
    assert cleared.json()["description"] is None
    assert cleared.json()["price"] == {"amount": 5, "currency": "USD"}


async def test_patch_to_existing_sku_conflicts(harness: Harness, acme: dict[str, Any]) -> None:
    await create(harness, sku="A-1")
    second = await create(harness, sku="B-2")
    response = await harness.client.patch(
        f"/v1/products/{second['id']}", json={"sku": "A-1"}, headers={"If-Match": '"v1"'}
    )
    assert response.status_code == 409
    assert problem(response)["code"] == "catalog.sku_taken"


async def test_duplicate_sku_is_409(harness: Harness, acme: dict[str, Any]) -> None:
    await create(harness)
    response = await harness.client.post("/v1/products", json={**SHIRT, "stock": 1})
    assert response.status_code == 409
    assert problem(response)["code"] == "catalog.sku_taken"


async def test_stock_adjustments_are_atomic_and_never_negative(
    harness: Harness, acme: dict[str, Any]
) -> None:
    product = await create(harness, stock=2)
    url = f"/v1/products/{product['id']}/stock-adjustments"
    down = await harness.client.post(url, json={"delta": -2, "reason": "sold"})
    assert down.status_code == 201, down.text
    assert down.json()["stock"] == 0
    below = await harness.client.post(url, json={"delta": -1, "reason": "sold"})
    assert below.status_code == 409
    assert problem(below)["code"] == "inventory.insufficient"
    zero = await harness.client.post(url, json={"delta": 0, "reason": "noop"})
    assert zero.status_code == 422
    current = await harness.client.get(f"/v1/products/{product['id']}")
    assert current.json()["stock"] == 0
    assert current.json()["version"] == 2


async def test_concurrent_decrements_never_oversell(harness: Harness, acme: dict[str, Any]) -> None:
    import asyncio

    product = await create(harness, stock=10)
    url = f"/v1/products/{product['id']}/stock-adjustments"
    results = await asyncio.gather(
        *(harness.client.post(url, json={"delta": -1, "reason": "race"}) for _ in range(25))
    )
    statuses = sorted(r.status_code for r in results)
    assert statuses.count(201) == 10
    assert statuses.count(409) == 15
    final = await harness.client.get(
        f"/v1/products/{product['id']}", headers={"X-Read-Consistency": "strong"}
    )
    assert final.json()["stock"] == 0


async def test_list_paginates_with_opaque_cursor_and_searches(
    harness: Harness, acme: dict[str, Any]
) -> None:
    for i in range(5):
        await create(harness, sku=f"SKU-{i}", name=f"Mug {i}" if i % 2 else f"Cap {i}")
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await harness.client.get("/v1/products", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        assert len(body["items"]) <= 2
        seen += [item["sku"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"SKU-{i}" for i in range(5)]
    assert len(seen) == len(set(seen))

    mugs = await harness.client.get("/v1/products", params={"q": "mug"})
    assert sorted(p["name"] for p in mugs.json()["items"]) == ["Mug 1", "Mug 3"]
    by_sku = await harness.client.get("/v1/products", params={"q": "sku-4"})
    assert [p["sku"] for p in by_sku.json()["items"]] == ["SKU-4"]
    wildcard = await harness.client.get("/v1/products", params={"q": "%"})
    assert wildcard.json()["items"] == []

    bad = await harness.client.get("/v1/products", params={"cursor": "not-a-cursor"})
    assert bad.status_code == 400
    assert problem(bad)["code"] == "pagination.invalid_cursor"
    too_many = await harness.client.get("/v1/products", params={"limit": 101})
    assert too_many.status_code == 422


async def test_tenants_are_isolated(harness: Harness, acme: dict[str, Any]) -> None:
    product = await create(harness)
    _, other_key = await harness.tenant_with_key("globex")
    other = {"X-API-Key": other_key}
    response = await harness.client.get(f"/v1/products/{product['id']}", headers=other)
    assert response.status_code == 404
    assert problem(response)["code"] == "catalog.not_found"
    listing = await harness.client.get("/v1/products", headers=other)
    assert listing.json()["items"] == []
    patch = await harness.client.patch(
        f"/v1/products/{product['id']}",
        json={"name": "x"},
        headers={**other, "If-Match": '"v1"'},
    )
    assert patch.status_code == 404
    adjust = await harness.client.post(
        f"/v1/products/{product['id']}/stock-adjustments",
        json={"delta": 1, "reason": "x"},
        headers=other,
    )
    assert adjust.status_code == 404


async def test_stock_is_capped_not_overflowed(harness: Harness, acme: dict[str, Any]) -> None:
    product = await create(harness, stock=1_000_000_000)
    url = f"/v1/products/{product['id']}/stock-adjustments"
    for _ in range(2):  # int4 would overflow on the second without the cap
        response = await harness.client.post(url, json={"delta": 1_000_000_000, "reason": "x"})
        assert response.status_code == 409
        assert problem(response)["code"] == "inventory.limit_exceeded"


async def test_hostile_conditional_and_cursor_values_are_4xx(
    harness: Harness, acme: dict[str, Any]
) -> None:
    import base64
    import json

    product = await create(harness)
    url = f"/v1/products/{product['id']}"
    for tag in ('"v\u00b2"', '"v' + "9" * 5000 + '"', '"v-1"', '"x"'):
        headers = {"If-Match": tag.encode()}  # raw bytes: httpx will not encode non-ASCII
        response = await harness.client.patch(url, json={"name": "N"}, headers=headers)
        assert response.status_code == 412, tag
    for values in (
        ["0001-01-01T00:00:00+14:00", product["id"]],  # before year 1 in UTC
        ["2026-01-01T00:00:00", product["id"]],  # naive
        ["2026-01-01T00:00:00+00:00", "not-a-uuid"],
        [1, 2],
    ):
        cursor = base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")
        response = await harness.client.get("/v1/products", params={"cursor": cursor})
        assert response.status_code == 400, values
        assert problem(response)["code"] == "pagination.invalid_cursor"


async def test_money_amounts_are_strict_integers(harness: Harness, acme: dict[str, Any]) -> None:
    """A JSON string or boolean is not an amount (lax mode read "100" as 100 and true as 1)."""
    for amount in ("100", True, False, 12.0, "1e3", None):
        response = await harness.client.post(
            "/v1/products",
            json={**SHIRT, "stock": 1, "price": {"amount": amount, "currency": "EUR"}},
        )
        assert response.status_code == 422, (amount, response.text)
        body = problem(response)
        assert any(e["loc"][-1] == "amount" for e in body["errors"]), body
    product = await create(harness, sku="OK-1")
    patched = await harness.client.patch(
        f"/v1/products/{product['id']}",
        json={"price": {"amount": True, "currency": "EUR"}},
        headers={"If-Match": '"v1"'},
    )
    assert patched.status_code == 422, patched.text
    assert (await create(harness, sku="OK-2", price={"amount": 0, "currency": "EUR"}))["price"][
        "amount"
    ] == 0


async def test_the_hot_path_and_the_fastapi_route_answer_alike(
    harness: Harness, acme: dict[str, Any]
) -> None:
    """GET /v1/products/{id} with a canonical UUID takes the hot path (app/http/hot.py); the
    same id without hyphens is not canonical and goes through FastAPI. Every answer must be the
    same either way: status, body, header names, problem codes."""
    product = await create(harness)
    _, reader_key = await harness.tenant_with_key("initech", scopes=("orders:read",))
    cases: list[tuple[str, dict[str, str]]] = [
        (product["id"], {}),
        (product["id"], {"If-None-Match": '"v1"'}),
        (product["id"], {"If-None-Match": '"v2", W/"v9"'}),
        (product["id"], {"X-API-Key": ""}),  # no credential: 401
        (product["id"], {"X-API-Key": "sf_live_not-a-key"}),
        (product["id"], {"X-API-Key": reader_key}),  # no catalog:read: 403
        ("00000000-0000-4000-8000-000000000000", {}),  # 404
    ]
    volatile = {"x-request-id", "date", "ratelimit", "ratelimit-policy", "retry-after"}
    for product_id, headers in cases:
        hot = await harness.client.get(f"/v1/products/{product_id}", headers=headers)
        slow = await harness.client.get(
            f"/v1/products/{product_id.replace('-', '')}", headers=headers
        )
        assert hot.status_code == slow.status_code, (product_id, headers, hot.text, slow.text)
        skip = volatile
        if hot.status_code >= 400:  # the problem names its path: `instance` and the length
            skip = volatile | {"content-length"}
            ignored = {"instance", "request_id"}
            assert {k: v for k, v in problem(hot).items() if k not in ignored} == {
                k: v for k, v in problem(slow).items() if k not in ignored
            }
        else:
            assert hot.content == slow.content
        assert {name: value for name, value in hot.headers.items() if name not in skip} == {
            name: value for name, value in slow.headers.items() if name not in skip
        }
        assert set(hot.headers) == set(slow.headers)


async def test_a_dependency_override_is_honoured_on_the_hot_path(
    harness: Harness, acme: dict[str, Any]
) -> None:
    """A test that overrides a FastAPI dependency (here the caller) gets the override on
    GET /v1/products/{canonical id} too: while any override is set, hot routes go to FastAPI."""
    product = await create(harness)
    del harness.client.headers["X-API-Key"]  # only the override can let this request in
    reader = get_args(CatalogReader)[1].dependency
    tenant_id = acme["tenant"].id

    async def acme_reader() -> Principal:
        return Principal("api_key", uuid.uuid4(), tenant_id, scopes=frozenset({"catalog:read"}))

    url = f"/v1/products/{product['id']}"
    harness.app.dependency_overrides[reader] = acme_reader
    try:
        overridden = await harness.client.get(url)
    finally:
        harness.app.dependency_overrides.clear()
    assert overridden.status_code == 200, overridden.text
    assert overridden.json()["id"] == product["id"]
    without = await harness.client.get(url)  # the hot path again: no credential, 401
    assert without.status_code == 401
    assert problem(without)["code"] == "auth.unauthenticated"
