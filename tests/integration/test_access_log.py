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


def access_line(app: ServedApp, request_id: str) -> dict[str, Any]:
    """The access-log line (JSON) of the request sent with this X-Request-ID, waiting for the
    process to write it (the launcher's own readiness probes are logged too)."""
    deadline = time.monotonic() + 10
    while True:
        for raw in app.log().splitlines():
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(record, dict) or record.get("event") != "http.request":
                continue
            if record.get("request_id") == request_id:
                return record
        assert time.monotonic() < deadline, app.log()[-3000:]
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
    proxied = {
        "X-Forwarded-For": "198.51.100.9, 203.0.113.7",
        "User-Agent": "probe/1.0",
        "X-Request-ID": "log-ok",
    }
    assert httpx.get(f"{app.url}/health/live", headers=proxied).status_code == 200
    long_agent = {"User-Agent": "x" * 5000, "X-Request-ID": "log-401"}
    assert httpx.get(f"{app.url}/v1/products", headers=long_agent).status_code == 401
    body = b"{" + b" " * 100 + b"}"
    busy = httpx.post(f"{app.url}/v1/products", content=body, headers={"X-Request-ID": "log-503"})
    assert busy.status_code == 503

    ok, unauthenticated, unavailable = (access_line(app, f"log-{x}") for x in ("ok", "401", "503"))
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
    forged = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "log-forged"}
    assert httpx.get(f"{app.url}/health/live", headers=forged).status_code == 200
    assert access_line(app, "log-forged")["client"] == "127.0.0.1"
