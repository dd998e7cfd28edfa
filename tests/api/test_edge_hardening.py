"""The HTTP edge against the smaller findings of the outside attack run: client addresses from
trusted proxies only, readiness of a saturated process, no Host-built redirects, security
headers, and docs that can be switched off."""

from __future__ import annotations

from typing import Any

import pytest

from app.http.client_address import TrustedProxies, normalize, throttle_bucket
from tests.conftest import Harness, problem


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("198.51.100.7", "1.2.3.4", "198.51.100.7"),  # untrusted peer: the header is ignored
        ("10.0.0.5", "1.2.3.4", "1.2.3.4"),  # our proxy saw 1.2.3.4
        ("10.0.0.5", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # the client's own entry is not believed
        ("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.9", "1.2.3.4"),  # two trusted hops
        ("10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all trusted: the far end
        ("10.0.0.5", "1.2.3.4, not-an-ip", "10.0.0.5"),  # garbage: believe nothing past it
        ("10.0.0.5", None, "10.0.0.5"),
        ("10.0.0.5", "2001:db8::1", "2001:db8::1"),
    ],
)
def test_client_is_the_right_most_untrusted_hop(
    peer: str, forwarded: str | None, client: str
) -> None:
    assert TrustedProxies(["10.0.0.0/8"]).client(peer, forwarded) == client


@pytest.mark.parametrize(
    ("raw", "normal", "bucket"),
    [
        ("10.9.9.9", "10.9.9.9", "10.9.9.9"),
        ("::ffff:10.9.9.9", "10.9.9.9", "10.9.9.9"),  # the same host, one counter
        ("fe80::1%eth0", "fe80::1", "fe80::/64"),
        ("2001:DB8:1:2:0:0:0:7", "2001:db8:1:2::7", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("unknown", "unknown", "unknown"),
    ],
)
def test_addresses_have_one_spelling_and_ipv6_counts_per_64(
    raw: str, normal: str, bucket: str
) -> None:
    assert normalize(raw) == normal
    assert throttle_bucket(raw) == bucket


def test_no_trusted_proxies_means_the_peer() -> None:
    proxies = TrustedProxies([])
    assert not proxies
    assert proxies.client("127.0.0.1", "1.2.3.4") == "127.0.0.1"


async def _fail_logins(harness: Harness, count: int, forwarded: str) -> list[int]:
    statuses = []
    for n in range(count):
        response = await harness.client.post(
            "/v1/auth/token",
            data={"username": f"ghost{n}@example.com", "password": "wrong-password-1"},
            headers={"X-Forwarded-For": forwarded},
        )
        statuses.append(response.status_code)
    return statuses


async def test_behind_a_trusted_proxy_the_lockout_counts_the_forwarded_client(
    make_harness: Any,
) -> None:
    # The in-process client connects from 127.0.0.1: here that is our proxy.
    harness = await make_harness(
        server={"trusted_proxies": ["127.0.0.1/32"]},
        auth={"lockout": {"max_failures_per_ip": 3}},
    )
    assert await _fail_logins(harness, 4, "6.6.6.6, 198.51.100.1") == [401, 401, 401, 429]
    # The same attacker cannot escape by changing the part of the header it controls ...
    assert await _fail_logins(harness, 1, "7.7.7.7, 198.51.100.1") == [429]
    # ... and another client behind the same proxy is not locked out with it.
    assert await _fail_logins(harness, 1, "198.51.100.2") == [401]


async def test_readiness_is_503_while_the_door_turns_requests_away(make_harness: Any) -> None:
    harness = await make_harness(
        server={"max_concurrent_requests": 2, "queue_timeout_seconds": 0.1}
    )
    door = harness.container.door()
    assert (await harness.client.get("/health/ready")).status_code == 200
    for _ in range(door.limit):  # every slot taken, as by requests in progress
        assert await door.enter()
    try:
        busy = await harness.client.get("/v1/products")
        assert busy.status_code == 503
        assert problem(busy)["code"] == "server.busy"
        ready = await harness.client.get("/health/ready")  # health skips the door
        assert ready.status_code == 503
        assert ready.json()["door"]["saturated"] is True
    finally:
        for _ in range(door.limit):
            door.leave()


async def test_no_redirect_built_from_the_host_header(harness: Harness, acme: Any) -> None:
    response = await harness.client.get("/v1/products/", headers={"Host": "evil.example"})
    assert response.status_code == 404
    assert "location" not in response.headers
    assert problem(response)["code"] == "route.not_found"


async def test_security_headers(harness: Harness, acme: Any) -> None:
    authenticated = await harness.client.get("/v1/products")
    assert authenticated.status_code == 200
    assert authenticated.headers["x-content-type-options"] == "nosniff"
    assert authenticated.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in authenticated.headers["content-security-policy"]
    del harness.client.headers["X-API-Key"]
    anonymous = await harness.client.get("/health/live")
    assert anonymous.headers["x-content-type-options"] == "nosniff"
    assert "cache-control" not in anonymous.headers


async def test_the_docs_page_has_a_csp_that_allows_only_its_own_script(harness: Harness) -> None:
    page = await harness.client.get("/docs")
    assert page.status_code == 200
    policy = page.headers["content-security-policy"]
    assert "script-src 'self' 'sha256-" in policy
    assert "'unsafe-inline'" not in policy
    assert "frame-ancestors 'none'" in policy


async def test_docs_and_openapi_can_be_switched_off(make_harness: Any) -> None:
    harness = await make_harness(server={"docs_enabled": False})
    for path in ("/docs", "/openapi.json", "/redoc"):
        response = await harness.client.get(path)
        assert response.status_code == 404, path
