"""Rate limits at the HTTP edge, in one process (memory storage): the 429 problem, Retry-After,
the IETF RateLimit-Policy / RateLimit headers (parsed with http-sfv, as a client would), per
tenant and per API key quotas, burst, and the per-address quota of the credential-less
endpoints. Limits shared by processes through Redis: tests/integration/test_rate_limit_processes.py.
"""

from __future__ import annotations

from typing import Any

import httpx
from http_sfv.list import List

from tests.conftest import Harness, problem

QUOTA_EXCEEDED = "https://iana.org/assignments/http-problem-types#quota-exceeded"
ON = {"enabled": True}


def fields(response: httpx.Response, name: str) -> dict[str, dict[str, Any]]:
    """A RateLimit-Policy or RateLimit header as {policy name: parameters}."""
    parsed = List()
    parsed.parse(response.headers[name].encode())
    return {item.value: dict(item.params) for item in parsed}


def plan(**values: Any) -> dict[str, Any]:
    # An hour: a test's few requests never straddle a window edge (limits' windows are aligned).
    return {"free": {"window_seconds": 3600, "burst": 0, "per_api_key": False, **values}}


async def test_a_tenant_over_its_quota_gets_429_with_retry_after_and_headers(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(rate_limits=ON, plans=plan(requests_per_window=5))
    _, key_a = await harness.tenant_with_key("alpha")
    _, key_b = await harness.tenant_with_key("beta")

    left = []
    for _ in range(5):
        response = await harness.client.get("/v1/products", headers={"X-API-Key": key_a})
        assert response.status_code == 200, response.text
        assert fields(response, "ratelimit-policy") == {"tenant": {"q": 5, "w": 3600}}
        current = fields(response, "ratelimit")["tenant"]
        assert 0 < current["t"] <= 3600
        left.append(current["r"])
    assert left == [4, 3, 2, 1, 0]

    refused = await harness.client.get("/v1/products", headers={"X-API-Key": key_a})
    assert refused.status_code == 429
    body = problem(refused)
    assert body["type"] == QUOTA_EXCEEDED
    assert body["code"] == "rate_limit.exceeded"
    retry_after = int(refused.headers["retry-after"])
    assert 1 <= retry_after <= 3600
    assert fields(refused, "ratelimit-policy") == {"tenant": {"q": 5, "w": 3600}}
    assert fields(refused, "ratelimit")["tenant"]["r"] == 0

    other = await harness.client.get("/v1/products", headers={"X-API-Key": key_b})
    assert other.status_code == 200
    assert fields(other, "ratelimit")["tenant"]["r"] == 4


async def test_quota_per_api_key_when_the_plan_says_so(make_harness: Any) -> None:
    harness: Harness = await make_harness(
        rate_limits=ON, plans=plan(requests_per_window=2, per_api_key=True)
    )
    tenant, first = await harness.tenant_with_key("alpha")
    _, second = await harness.container.api_key_service().issue(tenant.id, "two", ["catalog:read"])
    for key in (first, first, second, second):
        response = await harness.client.get("/v1/products", headers={"X-API-Key": key})
        assert response.status_code == 200, response.text
        assert set(fields(response, "ratelimit")) == {"api-key"}
    for key in (first, second):
        response = await harness.client.get("/v1/products", headers={"X-API-Key": key})
        assert response.status_code == 429


async def test_burst_caps_one_second_beside_the_window(make_harness: Any) -> None:
    harness: Harness = await make_harness(
        rate_limits=ON, plans=plan(requests_per_window=100, burst=3)
    )
    _, key = await harness.tenant_with_key("alpha")
    responses = [
        await harness.client.get("/v1/products", headers={"X-API-Key": key}) for _ in range(6)
    ]
    statuses = [response.status_code for response in responses]
    # Six requests well within a second: at most three (four if the window edge falls between
    # them) are admitted, and the refusal names the burst policy.
    assert statuses.count(200) <= 4, statuses
    assert statuses.count(429) >= 2, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert fields(refused, "ratelimit-policy") == {
        "tenant": {"q": 100, "w": 3600},
        "burst": {"q": 3, "w": 1},
    }
    assert fields(refused, "ratelimit")["burst"]["r"] == 0


async def test_a_quota_of_zero_refuses_every_request(make_harness: Any) -> None:
    harness: Harness = await make_harness(rate_limits=ON, plans=plan(requests_per_window=0))
    _, key = await harness.tenant_with_key("alpha")
    response = await harness.client.get("/v1/products", headers={"X-API-Key": key})
    assert response.status_code == 429
    assert problem(response)["type"] == QUOTA_EXCEEDED


async def test_credential_less_endpoints_are_limited_per_client_address(
    make_harness: Any,
) -> None:
    harness: Harness = await make_harness(
        rate_limits={
            "enabled": True,
            "anonymous": {"requests_per_window": 3, "window_seconds": 3600},
        }
    )
    login = {"username": "a@b.test", "password": "x" * 12}
    signup = {
        "slug": "gamma",
        "name": "Gamma",
        "owner": {"email": "g@g.test", "password": "correct horse battery"},
    }
    attempts = [
        await harness.client.post("/v1/auth/token", data=login),
        await harness.client.post("/v1/auth/refresh", json={"refresh_token": "nope"}),
        await harness.client.post("/v1/tenants", json=signup),
    ]
    for response in attempts:
        assert response.status_code != 429, response.text
        assert fields(response, "ratelimit-policy") == {"address": {"q": 3, "w": 3600}}
    refused = await harness.client.post("/v1/auth/token", data=login)
    assert refused.status_code == 429
    assert problem(refused)["type"] == QUOTA_EXCEEDED
    assert fields(refused, "ratelimit")["address"]["r"] == 0


async def test_disabled_limits_send_no_headers(harness: Harness, acme: dict[str, Any]) -> None:
    response = await harness.client.get("/v1/products")
    assert response.status_code == 200
    assert "ratelimit-policy" not in response.headers
