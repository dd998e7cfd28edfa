"""The operator CLI reads the same settings as the server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jwt

from app.identity.permissions import Role
from tests.conftest import Harness, app_url


def storefront(
    harness: Harness, *args: str, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    cluster = harness.cluster
    environment = {
        **os.environ,
        "STOREFRONT_DATABASE__PRIMARY__URL": app_url(cluster, "primary"),
        "STOREFRONT_DATABASE__REPLICAS": json.dumps([{"url": app_url(cluster, "replica")}]),
        "STOREFRONT_DATABASE__MIGRATION_URL": cluster.dsn("primary"),
        **env,
    }
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=environment,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_tenant_and_api_key_from_the_cli_work_over_http(harness: Harness) -> None:
    created = storefront(harness, "tenants", "create", "--slug", "acme", "--name", "Acme")
    assert created.returncode == 0, created.stderr
    again = storefront(harness, "tenants", "create", "--slug", "acme", "--name", "Acme")
    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: tenant.slug_taken")
    assert "exists" in again.stderr

    issued = storefront(
        harness, "api-keys", "create", "--tenant", "acme", "--scopes", "catalog:read"
    )
    assert issued.returncode == 0, issued.stderr
    secret = issued.stdout.strip().splitlines()[-1]
    assert secret.startswith("sf_live_")
    response = await harness.client.get("/v1/products", headers={"X-API-Key": secret})
    assert response.status_code == 200


async def test_cli_errors_are_one_line_and_non_zero(harness: Harness) -> None:
    unknown = storefront(
        harness, "api-keys", "create", "--tenant", "nobody", "--scopes", "catalog:read"
    )
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == "error: tenant.not_found: no tenant 'nobody'"
    bad_scope = storefront(harness, "tenants", "create", "--slug", "x!", "--name", "X")
    assert bad_scope.returncode == 1
    assert len(bad_scope.stderr.strip().splitlines()) == 1


async def test_config_show_masks_secrets(harness: Harness) -> None:
    shown = storefront(harness, "config", "show", STOREFRONT_OPS__OPERATOR_TOKEN="s3cret-token")
    assert shown.returncode == 0, shown.stderr
    config: dict[str, Any] = json.loads(shown.stdout)
    assert config["database"]["pool"]["size"] == 10
    assert "s3cret-token" not in shown.stdout


async def test_dev_status_json_before_the_cluster_exists(harness: Harness, tmp_path: Any) -> None:
    status = storefront(harness, "dev", "status", "--json", STOREFRONT_LOCAL_DIR=str(tmp_path))
    assert status.returncode == 0, status.stderr
    servers = json.loads(status.stdout)
    assert [s["role"] for s in servers] == ["primary", "replica"]
    assert {s["state"] for s in servers} == {"absent"}
    assert {"role", "port", "data_dir", "state"} <= set(servers[0])


async def test_db_status_checks_the_pool_budget_against_max_connections(
    harness: Harness,
) -> None:
    fits = storefront(harness, "db", "status", "--processes", "2")
    assert fits.returncode == 0, fits.stderr
    assert fits.stdout.count(": ok") == 2  # primary and replica
    assert "2 x pool = 40 connections" in fits.stdout  # 2 x (10 + 10)
    over = storefront(harness, "db", "status", "--processes", "50")
    assert over.returncode == 2
    assert over.stdout.count("WARNING: over budget") == 2


async def test_an_unreachable_database_is_one_line_and_non_zero(harness: Harness) -> None:
    nowhere = "postgresql+asyncpg://storefront_app@127.0.0.1:1/storefront"
    for args in (("migrate",), ("tenants", "list"), ("db", "status")):
        result = storefront(
            harness,
            *args,
            STOREFRONT_DATABASE__PRIMARY__URL=nowhere,
            STOREFRONT_DATABASE__MIGRATION_URL=nowhere,
            STOREFRONT_DATABASE__REPLICAS="[]",
        )
        assert result.returncode == 1, args
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, (args, result.stderr)
        assert lines[0].startswith("error: "), args


async def test_users_created_from_the_cli_log_in(harness: Harness) -> None:
    assert storefront(harness, "tenants", "create", "--slug", "acme", "--name", "A").returncode == 0
    created = storefront(
        harness,
        *("users", "create", "--tenant", "acme", "--email", "Ops@Acme.example"),
        *("--role", "admin"),
        stdin="a-long-password-9\n",
    )
    assert created.returncode == 0, created.stderr
    assert created.stderr == ""  # no prompt, no getpass warning: the password came on stdin
    assert created.stdout.startswith("created user ops@acme.example")
    assert "role=admin" in created.stdout
    response = await harness.client.post(
        "/v1/auth/token", data={"username": "ops@acme.example", "password": "a-long-password-9"}
    )
    assert response.status_code == 200, response.text


async def test_keygen_output_is_a_working_signing_key(make_harness: Any) -> None:
    harness = await make_harness()
    generated = storefront(harness, "auth", "keygen", "--kid", "k-2026", "--algorithm", "ES256")
    assert generated.returncode == 0, generated.stderr
    key = json.loads(generated.stdout)
    assert key["kid"] == "k-2026"
    configured = await make_harness(auth={"tokens": {"keys": [key]}})
    tokens = configured.container.token_service()
    token = tokens.issue_access(uuid.uuid4(), uuid.uuid4(), Role.viewer, uuid.uuid4())
    assert jwt.get_unverified_header(token) == {"alg": "ES256", "kid": "k-2026", "typ": "JWT"}
    assert tokens.verify_access(token).role is Role.viewer
    assert (
        storefront(harness, "auth", "keygen", "--kid", "x", "--algorithm", "none").returncode == 1
    )


def test_docs_print_the_permission_table() -> None:
    printed = subprocess.run(
        [sys.executable, "-m", "app.cli", "auth", "permissions"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert printed.returncode == 0, printed.stderr
    docs = (Path(__file__).resolve().parents[2] / "docs" / "permissions.md").read_text()
    assert printed.stdout in docs  # regenerate: storefront auth permissions


async def test_worker_once_publishes_events_and_settles_stuck_orders(harness: Harness) -> None:
    _, secret = await harness.tenant_with_key(
        "acme", scopes=("catalog:write", "orders:write", "reports:read")
    )
    headers = {"X-API-Key": secret}
    product = await harness.client.post(
        "/v1/products",
        json={"sku": "M", "name": "M", "price": {"amount": 500, "currency": "EUR"}, "stock": 3},
        headers=headers,
    )
    order = await harness.client.post(
        "/v1/orders",
        json={
            "items": [{"product_id": product.json()["id"], "quantity": 2}],
            "payment": {"token": "tok_ok"},
        },
        headers={**headers, "Idempotency-Key": "w-1"},
    )
    assert order.status_code == 201
    ran = storefront(harness, "worker", "--once")
    assert ran.returncode == 0, ran.stderr
    report = json.loads(ran.stdout.strip().splitlines()[-1])
    assert report["events_published"] == 3  # product.changed, order.placed, order.paid
    assert report["orders_settled"] == 0
    units = harness.cluster.psql("primary", "SELECT sum(units) FROM sales_daily")
    assert units.strip() == "2"


async def test_the_running_worker_relays_events_as_they_commit(harness: Harness) -> None:
    _, secret = await harness.tenant_with_key("acme", scopes=("catalog:write", "orders:write"))
    headers = {"X-API-Key": secret}
    product = await harness.client.post(
        "/v1/products",
        json={"sku": "M", "name": "M", "price": {"amount": 500, "currency": "EUR"}, "stock": 9},
        headers=headers,
    )
    cluster = harness.cluster
    worker = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "app.cli", "worker"),
        env={
            **os.environ,
            "STOREFRONT_DATABASE__PRIMARY__URL": app_url(cluster, "primary"),
            "STOREFRONT_DATABASE__REPLICAS": json.dumps([{"url": app_url(cluster, "replica")}]),
            "STOREFRONT_OUTBOX__POLL_INTERVAL_SECONDS": "60",  # only NOTIFY can be this quick
        },
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Started: it listens before its first drain, so once the product's event is published
        # every later commit wakes it (a fixed sleep is too short on a loaded machine).
        def drained() -> bool:
            left = cluster.psql("primary", "SELECT count(*) FROM outbox WHERE published_at IS NULL")
            return left.strip() == "0"

        await harness.wait_for(drained, within=60, what="the worker's start")
        for n in range(3):
            placed = await harness.client.post(
                "/v1/orders",
                json={
                    "items": [{"product_id": product.json()["id"], "quantity": 1}],
                    "payment": {"token": "tok_ok"},
                },
                headers={**headers, "Idempotency-Key": f"live-{n}"},
            )
            assert placed.status_code == 201

        def units() -> bool:
            sold = cluster.psql("primary", "SELECT coalesce(sum(units), 0) FROM sales_daily")
            return sold.strip() == "3"

        await harness.wait_for(units, within=10, what="the worker's relay")
        assert worker.returncode is None  # still running
    finally:
        worker.terminate()
        exit_code = await asyncio.wait_for(worker.wait(), timeout=10)
    assert exit_code == 0  # SIGTERM is a clean stop
