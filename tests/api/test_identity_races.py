"""Races between session use cases (issue 8 review, findings 1-2): logout against refresh,
login against a password change or a user deletion. Each use case that issues or ends a
session locks the user row first, so they serialize; these tests run them concurrently many
times and check that nothing survives that should have ended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.api.identity_helpers import PASSWORD, bearer, log_in, sign_up
from tests.conftest import Harness

MEMBER = "member@acme.example"
NEW_PASSWORD = "a-brand-new-password-42"
# Old-password logins fail by design here: no lockout in the way.
UNLOCKED = {"lockout": {"max_failures_per_account": 10_000, "max_failures_per_ip": 10_000}}


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> Harness:
    built: Harness = await make_harness(auth=UNLOCKED)
    return built


async def _refresh(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post("/v1/auth/refresh", json={"refresh_token": token})


async def _login(client: httpx.AsyncClient, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/v1/auth/token", data={"username": MEMBER, "password": password})


async def _owner_and_member(harness: Harness) -> tuple[dict[str, str], str]:
    client = harness.client
    await sign_up(client, "acme")
    owner = bearer(await log_in(client, "owner@acme.example"))
    created = await client.post(
        "/v1/users", json={"email": MEMBER, "password": PASSWORD, "role": "member"}, headers=owner
    )
    assert created.status_code == 201, created.text
    return owner, created.json()["id"]


async def test_a_refresh_racing_a_logout_does_not_keep_the_session(harness: Harness) -> None:
    """Logout revokes the family while refreshes of it run: whichever commits first, no
    refresh token of the family works afterwards (a refresh after the logout gets 401)."""
    client = harness.client
    await _owner_and_member(harness)
    survivors: list[str] = []
    for _ in range(20):
        sessions = [(await _login(client)).json()["refresh_token"] for _ in range(4)]
        calls: list[Any] = []
        for token in sessions:  # per session: one refresh and a logout at the same moment
            logout = client.post("/v1/auth/logout", json={"refresh_token": token})
            calls += [_refresh(client, token), logout]
        responses = await asyncio.gather(*calls)
        for refreshed in responses[0::2]:
            assert refreshed.status_code in (200, 401), refreshed.text
            if refreshed.status_code == 200:
                later = await _refresh(client, refreshed.json()["refresh_token"])
                assert later.status_code in (200, 401), later.text
                if later.status_code == 200:
                    survivors.append(later.json()["refresh_token"])
        for logged_out in responses[1::2]:
            assert logged_out.status_code == 204, logged_out.text
    assert survivors == [], f"{len(survivors)} sessions survived their logout"


async def test_logins_racing_a_password_change_keep_no_session(harness: Harness) -> None:
    """Logins with the old password that finish after the PATCH must not keep a session:
    once the PATCH has returned, every refresh token the old password obtained is dead."""
    client = harness.client
    owner, member_id = await _owner_and_member(harness)
    survivors = 0
    for round_ in range(10):
        old, new = (PASSWORD, NEW_PASSWORD) if round_ % 2 == 0 else (NEW_PASSWORD, PASSWORD)
        logins = [_login(client, old) for _ in range(6)]
        change = client.patch(f"/v1/users/{member_id}", json={"password": new}, headers=owner)
        *answers, changed = await asyncio.gather(*logins, change)
        assert changed.status_code == 200, changed.text
        for answer in answers:
            assert answer.status_code in (200, 401), answer.text
            if answer.status_code == 200:
                again = await _refresh(client, answer.json()["refresh_token"])
                assert again.status_code in (200, 401), again.text
                survivors += again.status_code == 200
        assert (await _login(client, new)).status_code == 200
    assert survivors == 0, f"{survivors} old-password sessions survived the password change"


async def test_logins_racing_a_user_deletion_get_no_500(harness: Harness) -> None:
    client = harness.client
    await sign_up(client, "acme")
    owner = bearer(await log_in(client, "owner@acme.example"))
    for _ in range(10):
        created = await client.post(
            "/v1/users", json={"email": MEMBER, "password": PASSWORD}, headers=owner
        )
        assert created.status_code == 201, created.text
        logins = [_login(client) for _ in range(6)]
        delete = client.delete(f"/v1/users/{created.json()['id']}", headers=owner)
        *answers, deleted = await asyncio.gather(*logins, delete)
        assert deleted.status_code == 204, deleted.text
        for answer in answers:
            assert answer.status_code in (200, 401), answer.text
            if answer.status_code == 200:  # logged in before the delete: the session is gone
                again = await _refresh(client, answer.json()["refresh_token"])
                assert again.status_code == 401, again.text
