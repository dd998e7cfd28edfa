"""The OpenAPI document says exactly what the server does: it validates, every error is
problem+json with the Problem schema, operationIds are clean, enforced headers are required,
ops routes declare their security, examples are valid, and the headers real responses carry are
all documented. HTTP semantics the document implies: 405 `Allow` names every method of the path,
unknown `X-Read-Consistency` values are refused."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest
from openapi_spec_validator import validate

from tests.conftest import Harness, problem

PROBLEM = "application/problem+json"
# Headers every response carries for security or transport, documented once in docs/decisions.md
# rather than on every response.
_TRANSPORT = {
    "content-type",
    "content-length",
    "date",
    "server",
    "connection",
    "x-content-type-options",
    "content-security-policy",
    "cache-control",
}


async def _spec(harness: Harness) -> dict[str, Any]:
    response = await harness.client.get("/openapi.json")
    assert response.status_code == 200
    spec: dict[str, Any] = response.json()
    return spec


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, methods in spec["paths"].items()
        for method, operation in methods.items()
    ]


async def test_the_document_is_valid_openapi(harness: Harness) -> None:
    validate(await _spec(harness))


async def test_operation_ids_are_clean_unique_verbs(harness: Harness) -> None:
    spec = await _spec(harness)
    ids = [operation["operationId"] for _, _, operation in _operations(spec)]
    assert len(ids) == len(set(ids))
    for operation_id in ids:
        assert re.fullmatch(r"[a-z]+(_[a-z]+)*", operation_id), operation_id
        assert "v1" not in operation_id
    assert {"create_product", "get_product", "update_product", "place_order", "get_order"} <= set(
        ids
    )
    tags = {tag["name"] for tag in spec["tags"]}
    for _, _, operation in _operations(spec):
        assert operation["tags"]
        assert set(operation["tags"]) <= tags


async def test_every_error_is_problem_json_and_every_operation_has_a_500(
    harness: Harness,
) -> None:
    spec = await _spec(harness)
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, method, operation in _operations(spec):
        responses = operation["responses"]
        assert "500" in responses, (method, path)
        for status, response in responses.items():
            assert response["headers"]["X-Request-ID"]["required"] is True
            if int(status) < 400:
                continue
            assert response["content"][PROBLEM] == {
                "schema": {"$ref": "#/components/schemas/Problem"}
            }, (method, path, status)
            assert set(response["content"]) == {PROBLEM} or (path, status) == (
                "/health/ready",
                "503",
            )
            if status in ("429", "503") and path != "/health/ready":
                assert response["headers"]["Retry-After"]["required"] is True
        assert {"400", "408", "413", "500", "503"} <= set(responses), (method, path)


async def test_enforced_request_headers_are_required(harness: Harness) -> None:
    spec = await _spec(harness)
    place = spec["paths"]["/v1/orders"]["post"]["parameters"]
    assert {"name": "Idempotency-Key", "required": True}.items() <= place[0].items()
    patch = spec["paths"]["/v1/products/{product_id}"]["patch"]["parameters"]
    assert any(p["name"] == "If-Match" and p["required"] for p in patch)
    listing = spec["paths"]["/v1/orders"]["get"]["parameters"]
    mode = next(p for p in listing if p["name"] == "X-Read-Consistency")
    assert mode["schema"] == {"$ref": "#/components/schemas/ReadConsistency"}
    assert spec["components"]["schemas"]["ReadConsistency"]["enum"] == ["strong"]
    assert place[0]["schema"]["type"] == "string"  # not "string or null"


async def test_security_is_declared_everywhere(harness: Harness) -> None:
    spec = await _spec(harness)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["OperatorToken"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schemes["OperatorToken"]["description"],
    }
    for path, _, operation in _operations(spec):
        if path.startswith(("/ops/", "/metrics")):
            assert operation["security"] == [{"OperatorToken": []}], path
        else:
            assert "security" in operation, path  # public ones say so: []
    assert spec["paths"]["/v1/tenants"]["post"]["security"] == []


async def test_constraints_the_server_enforces_are_in_the_schemas(harness: Harness) -> None:
    schemas = (await _spec(harness))["components"]["schemas"]
    assert schemas["ProductCreate"]["properties"]["name"]["pattern"] == "^[^\\u0000]*$"
    assert schemas["StockAdjustmentCreate"]["properties"]["delta"]["not"] == {"const": 0}
    update = schemas["ProductUpdate"]["properties"]
    assert "anyOf" not in update["name"]  # null is refused
    assert {"type": "null"} in update["description"]["anyOf"]  # null clears it
    # Every example in the document is valid against its own schema.
    resolver = {"components": {"schemas": schemas}}
    examples = 0
    for schema in schemas.values():
        for example in schema.get("examples", ()):
            if isinstance(example, dict):
                jsonschema.validate(example, {**schema, **resolver})
                examples += 1
    assert examples >= 6


@pytest.mark.parametrize(
    ("path", "allow"),
    [
        ("/v1/products", "GET, POST"),
        ("/v1/api-keys", "GET, POST"),
        ("/v1/users", "GET, POST"),
        ("/v1/users/{id}", "PATCH, DELETE"),
        ("/v1/products/{id}", "GET, PATCH"),
    ],
)
async def test_405_allows_every_method_of_the_path(harness: Harness, path: str, allow: str) -> None:
    response = await harness.client.options(path.replace("{id}", str(uuid.uuid4())))
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert problem(response)["code"] == "request.method_not_allowed"


async def test_an_unknown_read_consistency_is_refused(
    harness: Harness, acme: dict[str, Any]
) -> None:
    response = await harness.client.get("/v1/products", headers={"X-Read-Consistency": "banana"})
    assert response.status_code == 400
    assert problem(response)["code"] == "consistency.invalid_mode"
    strong = await harness.client.get("/v1/products", headers={"X-Read-Consistency": "strong"})
    assert strong.status_code == 200
    # Exactly what the document allows: the enum's one value, a token matching the pattern.
    for name, value in (("X-Read-Consistency", "STRONG"), ("X-Consistency-Token", " 0/1")):
        refused = await harness.client.get("/v1/products", headers={name: value})
        assert refused.status_code == 400, (name, value)


async def test_a_405_inside_the_docs_assets_keeps_its_allow(harness: Harness) -> None:
    page = (await harness.client.get("/docs")).text
    asset = next(part.split('"')[0] for part in page.split('href="')[1:] if "/docs/assets/" in part)
    response = await harness.client.post(asset)
    assert response.status_code == 405
    assert "GET" in response.headers["allow"]


def _documented(spec: dict[str, Any], path: str, method: str, status: int) -> set[str]:
    response = spec["paths"][path][method]["responses"][str(status)]
    return {name.lower() for name in response.get("headers", {})}


async def test_every_header_a_response_carries_is_documented(
    make_harness: Callable[..., Any],
) -> None:
    # Rate limits on, so the RateLimit headers are there to be checked too.
    harness: Harness = await make_harness(rate_limits={"enabled": True})
    scopes = ("catalog:read", "catalog:write", "orders:read", "orders:write")
    _, secret = await harness.tenant_with_key("acme", scopes=scopes)
    spec = await _spec(harness)
    client = harness.client
    seen: list[tuple[str, str, httpx.Response]] = []

    async def call(path: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await client.request(method.upper(), url, **kwargs)
        seen.append((path, method, response))
        return response

    # Public operations, counted per client address.
    login = {"username": "nobody@example.com", "password": "wrong password"}
    await call("/v1/auth/token", "post", "/v1/auth/token", data=login)
    await call("/v1/auth/refresh", "post", "/v1/auth/refresh", json={"refresh_token": "x"})
    signup = {"slug": f"oas-{uuid.uuid4().hex[:8]}", "name": "OAS"}
    signup["owner"] = {"email": "owner@oas.example", "password": "a long enough passphrase"}
    assert (await call("/v1/tenants", "post", "/v1/tenants", json=signup)).status_code == 201
    owner = {"username": "owner@oas.example", "password": "a long enough passphrase"}
    owner["tenant"] = signup["slug"]
    tokens = await call("/v1/auth/token", "post", "/v1/auth/token", data=owner)
    assert tokens.headers["pragma"] == "no-cache"
    bearer = {"Authorization": f"Bearer {tokens.json()['access_token']}"}
    key = {"name": "oas", "scopes": ["catalog:read"]}
    assert (await call("/v1/api-keys", "post", "/v1/api-keys", json=key, headers=bearer)).is_success
    secret_created = await call("/v1/webhook-secret", "post", "/v1/webhook-secret", headers=bearer)
    assert secret_created.status_code == 201
    await call("/health/live", "get", "/health/live")
    client.headers["X-API-Key"] = secret

    body = {"sku": f"OAS-{uuid.uuid4().hex[:8]}", "name": "x", "stock": 5}
    body["price"] = {"amount": 100, "currency": "EUR"}
    created = await call("/v1/products", "post", "/v1/products", json=body)
    assert created.status_code == 201
    item = "/v1/products/{product_id}"
    url = created.headers["location"]
    fetched = await call(item, "get", url)
    await call(item, "get", url, headers={"If-None-Match": fetched.headers["etag"]})
    await call(item, "patch", url, json={"name": "y"}, headers={"If-Match": '"99"'})
    await call(item, "patch", url, json={"name": "y"})
    await call(
        item, "patch", url, json={"name": "y"}, headers={"If-Match": fetched.headers["etag"]}
    )
    await call(item, "get", f"/v1/products/{uuid.uuid4()}")
    order = {"items": [{"product_id": url.rsplit("/", 1)[1], "quantity": 1}]}
    order["payment"] = {"token": "tok_ok"}
    key = {"Idempotency-Key": uuid.uuid4().hex}
    assert (await call("/v1/orders", "post", "/v1/orders", json=order, headers=key)).is_success
    replay = await call("/v1/orders", "post", "/v1/orders", json=order, headers=key)
    assert replay.headers["idempotent-replayed"] == "true"
    await call("/v1/orders", "get", "/v1/orders", headers={"X-Read-Consistency": "nope"})
    await call("/v1/me", "get", "/v1/me", headers={"X-API-Key": "sf_live_wrong"})
    assert any("ratelimit" in response.headers for _, _, response in seen)
    for path, method, response in seen:
        ours = {name for name in response.headers if name.lower() not in _TRANSPORT}
        missing = ours - _documented(spec, path, method, response.status_code)
        assert not missing, (method, path, response.status_code, missing)
