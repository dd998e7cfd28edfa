"""`storefront auth unlock` lifts a login lockout counted in Redis by a real app process."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RedisServer
from tests.served_app import ServedApp, served_env

PASSWORD = "a long passphrase 7"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()  # its own: no other test's failures from 127.0.0.1 in it
    try:
        yield server
    finally:
        server.stop()


def _unlock(cluster: Any, redis_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "auth", "unlock", *args],
        env={**served_env(cluster), "STOREFRONT_REDIS__URL": redis_url},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _login(app: ServedApp, email: str, password: str) -> int:
    response = httpx.post(
        f"{app.url}/v1/auth/token", data={"username": email, "password": password}
    )
    return response.status_code


def test_unlock_lifts_an_account_and_an_address_lockout(
    cluster: Any, served_apps: Callable[..., ServedApp], redis_server: RedisServer
) -> None:
    app = served_apps(env={"STOREFRONT_REDIS__URL": redis_server.url})
    email = "ada@unlock.example"
    signed_up = httpx.post(
        f"{app.url}/v1/tenants",
        json={"name": "U", "slug": "unlock", "owner": {"email": email, "password": PASSWORD}},
    )
    assert signed_up.status_code == 201, signed_up.text

    for _ in range(5):  # auth.lockout.max_failures_per_account
        assert _login(app, email, "wrong password") == 401
    assert _login(app, email, PASSWORD) == 429  # locked: even the right password
    unlocked = _unlock(cluster, redis_server.url, "--email", "Ada@Unlock.example")
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.strip() == "unlocked 1 account(s) of Ada@Unlock.example"
    assert _login(app, email, PASSWORD) == 200

    for n in range(20 - 5):  # the address's failures (max_failures_per_ip), 5 counted above
        assert _login(app, f"nobody-{n}@unlock.example", "wrong password") == 401
    assert _login(app, email, PASSWORD) == 429  # the address is locked out now
    unlocked = _unlock(cluster, redis_server.url, "--address", "127.0.0.1")
    assert unlocked.returncode == 0, unlocked.stderr
    assert _login(app, email, PASSWORD) == 200


def test_unlock_without_redis_says_what_clears_it(cluster: Any) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "auth", "unlock", "--address", "::1"],
        env={k: v for k, v in served_env(cluster).items() if k != "STOREFRONT_REDIS__URL"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: login failures are counted in each API process's")
    assert "restarting the API processes" in result.stderr
    assert os.linesep not in result.stderr.rstrip(os.linesep)
