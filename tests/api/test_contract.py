"""HTTP contract: problem+json for every error path, X-Request-ID on every response."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import Harness, problem


async def test_request_id_is_echoed_or_generated(harness: Harness) -> None:
    echoed = await harness.client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await harness.client.get("/health/live", headers={"X-Request-ID": "bad id!\t"})
    assert generated.headers["x-request-id"] not in ("", "bad id!\t")
    assert len(generated.headers["x-request-id"]) == 32


async def test_unknown_route_is_404_problem(harness: Harness) -> None:
    response = await harness.client.get("/v1/nope")
    assert response.status_code == 404
    assert problem(response)["code"] == "route.not_found"


async def test_wrong_method_is_405_problem(harness: Harness) -> None:
    response = await harness.client.delete("/v1/products")
    assert response.status_code == 405
    assert problem(response)["code"] == "request.method_not_allowed"
    assert "allow" in response.headers


@pytest.mark.parametrize(
    "body",
    [
        {"sku": "", "name": "x", "price": {"amount": 1, "currency": "EUR"}},
        {"sku": "A", "name": "x", "price": {"amount": -1, "currency": "EUR"}},
        {"sku": "A", "name": "x", "price": {"amount": 1, "currency": "euro"}},
        {"sku": "A", "name": "x", "price": {"amount": 1, "currency": "EUR"}, "stock": -1},
        {"sku": "A", "name": "x", "price": {"amount": 1, "currency": "EUR"}, "extra": 1},
        {"sku": "A", "name": "x" * 201, "price": {"amount": 1, "currency": "EUR"}},
        {"sku": "A", "name": "x", "price": 12.99},
    ],
)
async def test_invalid_bodies_are_422_with_errors(
    harness: Harness, acme: dict[str, Any], body: dict[str, Any]
) -> None:
    response = await harness.client.post("/v1/products", json=body)
    assert response.status_code == 422
    payload = problem(response)
    assert payload["code"] == "request.invalid"
    assert payload["errors"]
    assert {"loc", "msg", "type"} <= set(payload["errors"][0])


async def test_malformed_json_is_422(harness: Harness, acme: dict[str, Any]) -> None:
    response = await harness.client.post(
        "/v1/products", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    problem(response)


async def test_bad_path_id_is_422_and_unknown_id_is_404(
    harness: Harness, acme: dict[str, Any]
) -> None:
    assert (await harness.client.get("/v1/products/not-a-uuid")).status_code == 422
    missing = await harness.client.get(f"/v1/products/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert problem(missing)["code"] == "catalog.not_found"


async def test_bad_consistency_token_is_400(harness: Harness, acme: dict[str, Any]) -> None:
    response = await harness.client.get("/v1/products", headers={"X-Consistency-Token": "nonsense"})
    assert response.status_code == 400
    assert problem(response)["code"] == "consistency.invalid_token"


async def test_unexpected_error_is_500_problem_without_internals(
    harness: Harness, acme: dict[str, Any]
) -> None:
    from dependency_injector import providers

    class Exploding:
        async def get(self, *args: Any) -> Any:
            raise RuntimeError("secret internal detail")

    with harness.container.catalog_service.override(providers.Object(Exploding())):
        response = await harness.client.get(f"/v1/products/{uuid.uuid4()}")
    assert response.status_code == 500
    body = problem(response)
    assert body["code"] == "internal"
    assert "secret" not in response.text
    assert "Traceback" not in response.text


async def test_openapi_documents_problem_responses(harness: Harness) -> None:
    spec = (await harness.client.get("/openapi.json")).json()
    patch = spec["paths"]["/v1/products/{product_id}"]["patch"]["responses"]
    assert {"412", "428", "404", "422"} <= set(patch)
    assert "application/problem+json" in patch["412"]["content"]
    assert (await harness.client.get("/docs")).status_code == 200
