"""Revoked sessions stay revoked, in every process, for as long as their tokens live.

The attack from the outside run: revocations lived only in the revoking process, as tombstones
kept 600 s while access tokens live 900 s. After a logout the token worked again at 615 s (and
never stopped working in the other API processes); after an owner reset an admin's password,
the admin's old token created a user at 610 s. Here: real app processes on one database, clocks
moved from the outside (tests/served_app.py), caches on as in production.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx

from tests.served_app import ServedApp

PASSWORD = "correct-horse-battery"
ENV = {
    # Every process must verify every other's tokens: one shared signing key.
    "STOREFRONT_AUTH__TOKENS__KEYS": '[{"kid": "shared-1", "algorithm": "HS256",'
    ' "key": "a-shared-test-secret-of-at-least-32-bytes"}]',
    # Caching as in production (config/test.yaml turns it off): the token and the role are
    # trusted without a lookup, so only a tombstone can refuse them.
    "STOREFRONT_AUTH__USER_CACHE_TTL_SECONDS": "30",
    "STOREFRONT_AUTH__API_KEY_CACHE_TTL_SECONDS": "30",
}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _sign_up_and_log_in(app: ServedApp, slug: str) -> dict[str, Any]:
    email = f"owner@{slug}.example"
    signed_up = httpx.post(
        f"{app.url}/v1/tenants",
        json={"name": slug.title(), "slug": slug, "owner": {"email": email, "password": PASSWORD}},
    )
    assert signed_up.status_code == 201, signed_up.text
    return _log_in(app, email)


def _log_in(app: ServedApp, email: str, password: str = PASSWORD) -> dict[str, Any]:
    response = httpx.post(
        f"{app.url}/v1/auth/token", data={"username": email, "password": password}
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _me(app: ServedApp, token: str) -> httpx.Response:
    return httpx.get(f"{app.url}/v1/me", headers=_bearer(token))


def _refused_as_revoked(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    # Refused because the session ended, not because the token expired.
    assert "session has ended" in response.json()["detail"], response.text


def _within(seconds: float, check: Callable[[], bool]) -> float:
    """Seconds it took `check` to become true; fails after `seconds`."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > seconds:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.05)
    return time.monotonic() - started


def test_a_logout_reaches_every_process_and_outlives_the_old_tombstone_window(
    served_apps: Callable[..., ServedApp],
) -> None:
    first, second = served_apps(env=ENV), served_apps(env=ENV)
    tokens = _sign_up_and_log_in(first, "revoke")
    access = tokens["access_token"]
    assert _me(first, access).status_code == 200
    assert _me(second, access).status_code == 200  # verified and cached by the second process

    logout = httpx.post(
        f"{first.url}/v1/auth/logout", json={"refresh_token": tokens["refresh_token"]}
    )
    assert logout.status_code == 204, logout.text
    _refused_as_revoked(_me(first, access))
    took = _within(2.0, lambda: _me(second, access).status_code == 401)
    assert took < 2.0
    _refused_as_revoked(_me(second, access))

    # Past the old 600 s tombstone window, the token (900 s) not yet expired.
    first.move_clock(700)
    second.move_clock(700)
    for app in (first, second):
        _refused_as_revoked(_me(app, access))
    # The clocks did move, and the processes still serve: a new session works at +700 s.
    fresh = _log_in(first, "owner@revoke.example")
    assert _me(second, fresh["access_token"]).status_code == 200

    # A process started after the logout learns it from the database at start-up.
    third = served_apps(env=ENV, clock_offset=700)
    _refused_as_revoked(_me(third, access))
    assert _me(third, fresh["access_token"]).status_code == 200


def test_a_password_reset_ends_the_old_sessions_in_every_process_past_610_s(
    served_apps: Callable[..., ServedApp],
) -> None:
    first, second = served_apps(env=ENV), served_apps(env=ENV)
    owner = _sign_up_and_log_in(first, "reset")
    created = httpx.post(
        f"{first.url}/v1/users",
        json={"email": "admin@reset.example", "password": PASSWORD, "role": "admin"},
        headers=_bearer(owner["access_token"]),
    )
    assert created.status_code == 201, created.text
    admin_id = created.json()["id"]
    admin = _log_in(second, "admin@reset.example")["access_token"]

    def create_user(app: ServedApp) -> httpx.Response:
        return httpx.post(
            f"{app.url}/v1/users",
            json={"email": f"u-{uuid.uuid4().hex[:8]}@reset.example", "password": PASSWORD},
            headers=_bearer(admin),
        )

    assert create_user(second).status_code == 201  # the admin's token works (and is cached)

    reset = httpx.patch(
        f"{first.url}/v1/users/{admin_id}",
        json={"password": "a-new-password-for-the-admin"},
        headers=_bearer(owner["access_token"]),
    )
    assert reset.status_code == 200, reset.text
    _within(2.0, lambda: create_user(second).status_code == 401)
    _refused_as_revoked(create_user(second))

    first.move_clock(610)
    second.move_clock(610)
    for app in (first, second):
        _refused_as_revoked(create_user(app))
    # The owner's own session was not touched by the admin's reset.
    assert _me(second, owner["access_token"]).status_code == 200
