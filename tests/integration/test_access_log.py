"""The access log of a real served process: level by status class, the client address (from
trusted proxies only) and the user agent (bounded)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from app.http.middleware import USER_AGENT_LIMIT
from tests.served_app import ServedApp

LOGGING = {"STOREFRONT_LOGGING__ACCESS_LOG": "true", "STOREFRONT_LOGGING__LEVEL": "INFO"}


def access_lines(app: ServedApp, count: int) -> list[dict[str, Any]]:
    """The first `count` access-log lines (JSON), waiting for the process to write them."""
    deadline = time.monotonic() + 10
    while True:
        lines = []
        for raw in app.log().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("event") == "http.request":
                lines.append(record)
        if len(lines) >= count or time.monotonic() > deadline:
            assert len(lines) >= count, app.log()[-3000:]
            return lines[:count]
        time.sleep(0.05)


def test_levels_follow_the_status_class_with_the_proxied_client_and_its_user_agent(
    served_apps: Any,
) -> None:
    app = served_apps(
        env={
            **LOGGING,
            "STOREFRONT_SERVER__TRUSTED_PROXIES": '["127.0.0.1"]',
            "STOREFRONT_SERVER__MAX_BUFFERED_BODY_BYTES": "16",  # any larger body: 503
        }
    )
    proxied = {"X-Forwarded-For": "198.51.100.9, 203.0.113.7", "User-Agent": "probe/1.0"}
    assert httpx.get(f"{app.url}/health/live", headers=proxied).status_code == 200
    long_agent = {"User-Agent": "x" * 5000}
    assert httpx.get(f"{app.url}/v1/products", headers=long_agent).status_code == 401
    busy = httpx.post(f"{app.url}/v1/products", content=b"{" + b" " * 100 + b"}")
    assert busy.status_code == 503

    ok, unauthenticated, unavailable = access_lines(app, 3)
    assert (ok["level"], ok["status"], ok["route"]) == ("info", 200, "/health/live")
    assert ok["client"] == "203.0.113.7"  # the right-most address our proxy did not add
    assert ok["user_agent"] == "probe/1.0"
    assert (unauthenticated["level"], unauthenticated["status"]) == ("warning", 401)
    assert unauthenticated["user_agent"] == "x" * USER_AGENT_LIMIT
    assert unauthenticated["client"] == "127.0.0.1"  # no X-Forwarded-For: the peer
    assert (unavailable["level"], unavailable["status"]) == ("error", 503)
    assert unavailable["user_agent"].startswith("python-httpx/")


def test_forwarded_for_from_an_untrusted_peer_is_not_believed(served_apps: Any) -> None:
    app = served_apps(env=LOGGING)  # server.trusted_proxies: none
    forged = {"X-Forwarded-For": "203.0.113.7"}
    assert httpx.get(f"{app.url}/health/live", headers=forged).status_code == 200
    (line,) = access_lines(app, 1)
    assert line["client"] == "127.0.0.1"
