"""The expand/contract rule, rehearsed (docs/operations.md, "Releasing with schema changes"):

- the previous release's code (the commit in deploy/previous-release, run from its own files)
  works on this release's expand schema (OLDEST_SCHEMA): sign up, create a product, place and
  read an order, all 2xx;
- this release's code works on the expand schema and on the contract schema, and reads what
  the previous release wrote there;
- the contract step refuses to run while lines lack their amount, and runs after the backfill;
- this release's code is not ready on a schema from before its expand (so no traffic reaches it
  there: the rule does not require it to work), and is ready on a later release's schema.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.devcluster import LocalCluster
from app.ops.service import OLDEST_SCHEMA, migration_head
from tests.conftest import Harness
from tests.schema_rehearsal import ScratchDatabase, previous_release_tree, scratch_database
from tests.served_app import OPERATOR_TOKEN, _wait_live, free_port, stop_process

OWNER = {"email": "owner@rehearsal.example", "password": "correct horse battery 42"}


def _env(database: ScratchDatabase) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    return {
        **kept,
        "STOREFRONT_ENV": "test",
        "STOREFRONT_DATABASE__CONNECT__SSL": "disable",
        "STOREFRONT_OPS__OPERATOR_TOKEN": OPERATOR_TOKEN,
        **database.settings_env(),
    }


def storefront(database: ScratchDatabase, *args: str) -> subprocess.CompletedProcess[str]:
    """This release's CLI on the scratch database."""
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=_env(database),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def previous_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return previous_release_tree(tmp_path_factory.mktemp("previous-release"))


@pytest.fixture
def expanded(cluster: LocalCluster) -> Iterator[ScratchDatabase]:
    with scratch_database(cluster, OLDEST_SCHEMA) as database:
        yield database


@pytest.fixture
def previous_app(
    previous_tree: Path, expanded: ScratchDatabase, tmp_path: Path
) -> Iterator[Callable[[], None]]:
    """The previous release's `storefront serve` (its own files, this venv's packages) on the
    expand schema; yields a function that stops it (also called at teardown)."""
    port = free_port()
    log = tmp_path / "previous-release.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
            cwd=previous_tree,
            env={**_env(expanded), "PYTHONPATH": str(previous_tree)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        if not _wait_live(url, process, 60.0):
            raise RuntimeError(f"the previous release did not start:\n{log.read_text()[-4000:]}")
        yield _Stopper(process, url)
    finally:
        stop_process(process)


class _Stopper:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def __call__(self) -> None:
        stop_process(self.process)


async def _shop_and_order(client: httpx.AsyncClient, slug: str, sku: str) -> dict[str, Any]:
    """Sign up, log in, create a product, place an order and read it back: every step 2xx.
    Returns the order as read and the owner's headers."""
    signed_up = await client.post(
        "/v1/tenants", json={"name": slug.title(), "slug": slug, "owner": OWNER}
    )
    assert signed_up.status_code == 201, signed_up.text
    auth = await _log_in(client, slug)
    product = await client.post(
        "/v1/products",
        headers=auth,
        json={"sku": sku, "name": "Mug", "price": {"amount": 1299, "currency": "EUR"}, "stock": 9},
    )
    assert product.status_code == 201, product.text
    placed = await client.post(
        "/v1/orders",
        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "items": [{"product_id": product.json()["id"], "quantity": 3}],
            "payment": {"token": "tok_ok"},
        },
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "confirmed"
    read = await client.get(
        f"/v1/orders/{placed.json()['id']}",
        headers={**auth, "X-Read-Consistency": "strong"},
    )
    assert read.status_code == 200, read.text
    order: dict[str, Any] = read.json()
    order["_auth"] = auth
    return order


async def _log_in(client: httpx.AsyncClient, slug: str) -> dict[str, str]:
    token = await client.post(
        "/v1/auth/token",
        data={"username": OWNER["email"], "password": OWNER["password"], "tenant": slug},
    )
    assert token.status_code == 200, token.text
    return {"Authorization": f"Bearer {token.json()['access_token']}"}


async def _order(
    harness: Harness, auth: dict[str, str], product_id: str, quantity: int
) -> httpx.Response:
    placed: httpx.Response = await harness.client.post(
        "/v1/orders",
        headers={**auth, "Idempotency-Key": str(uuid.uuid4())},
        json={
            "items": [{"product_id": product_id, "quantity": quantity}],
            "payment": {"token": "tok_ok"},
        },
    )
    assert placed.status_code == 201, placed.text
    return placed


def _previous_head(tree: Path) -> str | None:
    config = Config(str(tree / "alembic.ini"))
    config.set_main_option("script_location", str(tree / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


async def test_a_release_through_expand_backfill_and_contract(
    expanded: ScratchDatabase,
    previous_tree: Path,
    previous_app: _Stopper,
    make_harness: Callable[..., Any],
) -> None:
    # 1. Expand applied; the previous release still serves and works.
    async with httpx.AsyncClient(base_url=previous_app.url, timeout=30) as old:
        old_order = await _shop_and_order(old, "old-release", "MUG-OLD")
        ready = (await old.get("/health/ready")).json()
    # It is the previous release that answered (its code expects its own head).
    assert ready["primary"]["expected_schema"] == _previous_head(previous_tree) != migration_head()
    assert ready["primary"]["schema_revision"] == OLDEST_SCHEMA
    assert (
        expanded.psql(
            f"SELECT count(*) FROM order_lines WHERE order_id = '{old_order['id']}'"
            " AND line_amount IS NULL"
        )
        == "1"
    ), "the previous release does not know line_amount"

    # 2. This release's code on the same schema, while the previous one still runs.
    harness: Harness = await make_harness(
        primary={"url": expanded.app_url("primary")},
        replicas=[{"url": expanded.app_url("replica"), "weight": 1}],
        migration_url=expanded.owner_dsn(),
    )
    assert (await harness.client.get("/health/ready")).status_code == 200
    old_order.pop("_auth")  # each process signs with its own ephemeral key: log in again
    auth = await _log_in(harness.client, "old-release")
    strong = {**auth, "X-Read-Consistency": "strong"}
    read = await harness.client.get(f"/v1/orders/{old_order['id']}", headers=strong)
    assert read.status_code == 200, read.text
    for old_line, new_line in zip(old_order["items"], read.json()["items"], strict=True):
        assert old_line.items() <= new_line.items()
    product_id = old_order["items"][0]["product_id"]
    placed = await _order(harness, auth, product_id, quantity=2)
    assert expanded.psql(
        f"SELECT line_amount FROM order_lines WHERE order_id = '{placed.json()['id']}'"
    ) == str(2 * 1299), "this release stores the amount"

    # 3. The contract step refuses while a line lacks its amount: nothing changes.
    refused = storefront(expanded, "migrate")
    assert refused.returncode == 1
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "storefront migrate backfill order_line_amounts" in refused.stderr
    assert expanded.psql("SELECT version_num FROM alembic_version") == OLDEST_SCHEMA
    assert (
        expanded.psql("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%line_amount%'")
        == "0"
    )

    # 4. The backfill, then (the previous release stopped) the contract step.
    filled = storefront(expanded, "migrate", "backfill", "order_line_amounts")
    assert filled.returncode == 0, filled.stderr
    assert "order_line_amounts: done, 1 row(s) updated by this run, 1 in total" in filled.stdout
    previous_app()
    contracted = storefront(expanded, "migrate")
    assert contracted.returncode == 0, contracted.stderr
    assert expanded.psql("SELECT version_num FROM alembic_version") == migration_head()
    assert (
        expanded.psql(
            "SELECT is_nullable FROM information_schema.columns"
            " WHERE table_name = 'order_lines' AND column_name = 'line_amount'"
        )
        == "NO"
    )
    assert expanded.psql(
        f"SELECT line_amount FROM order_lines WHERE order_id = '{old_order['id']}'"
    ) == str(3 * 1299)

    # 5. This release's code on the contract schema.
    assert (await harness.client.get("/health/ready")).status_code == 200
    for order_id in (old_order["id"], placed.json()["id"]):
        again = await harness.client.get(f"/v1/orders/{order_id}", headers=strong)
        assert again.status_code == 200, again.text
    await _order(harness, auth, product_id, quantity=1)


def test_the_contract_step_reruns_after_an_interrupted_run(expanded: ScratchDatabase) -> None:
    """A run that failed after committing its NOT VALID check (VALIDATE timed out, say) left
    the check behind: running the migration again succeeds."""
    expanded.psql(
        "ALTER TABLE order_lines ADD CONSTRAINT ck_order_lines_line_amount_not_null"
        " CHECK (line_amount IS NOT NULL) NOT VALID"
    )
    expanded.migrate("head")
    assert expanded.psql("SELECT version_num FROM alembic_version") == migration_head()
    assert (
        expanded.psql("SELECT count(*) FROM pg_constraint WHERE conname LIKE '%line_amount%'")
        == "0"
    )


@pytest.fixture
def before_expand(cluster: LocalCluster) -> Iterator[ScratchDatabase]:
    with scratch_database(cluster, "0007") as database:
        yield database


@pytest.fixture
def later_release(cluster: LocalCluster) -> Iterator[ScratchDatabase]:
    """A schema a later release migrated to: a revision this code has no script for."""
    with scratch_database(cluster, "head") as database:
        database.psql("UPDATE alembic_version SET version_num = 'f00dfeed0001'")
        yield database


async def _ready(make_harness: Callable[..., Any], database: ScratchDatabase) -> httpx.Response:
    harness: Harness = await make_harness(
        primary={"url": database.app_url("primary")},
        replicas=[{"url": database.app_url("replica"), "weight": 1}],
        migration_url=database.owner_dsn(),
    )
    response: httpx.Response = await harness.client.get("/health/ready")
    return response


async def test_this_release_is_not_ready_before_its_expand_step(
    before_expand: ScratchDatabase, make_harness: Callable[..., Any]
) -> None:
    response = await _ready(make_harness, before_expand)
    assert response.status_code == 503
    assert response.json()["primary"]["schema_revision"] == "0007"


async def test_this_release_is_ready_on_a_later_releases_schema(
    later_release: ScratchDatabase, make_harness: Callable[..., Any]
) -> None:
    response = await _ready(make_harness, later_release)
    assert response.status_code == 200, response.text
    assert response.json()["primary"]["schema_revision"] == "f00dfeed0001"


def test_migrating_to_head_applies_the_expand_and_refuses_the_contract(
    before_expand: ScratchDatabase,
) -> None:
    """One transaction per revision: on a database with lines, `storefront migrate` commits the
    expand step and then stops at the contract step's guard (one line, exit 1)."""
    tenant, product, order = (uuid.uuid4() for _ in range(3))
    before_expand.psql(
        f"INSERT INTO tenants (id, slug, name) VALUES ('{tenant}', 'early', 'Early');"
        " INSERT INTO products (id, tenant_id, sku, name, price_amount, price_currency, stock)"
        f" VALUES ('{product}', '{tenant}', 'S', 'S', 250, 'EUR', 1);"
        " INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token,"
        f" payment_key) VALUES ('{order}', '{tenant}', 'confirmed', 500, 'EUR', 't', 'k');"
        " INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount)"
        f" VALUES ('{order}', '{product}', '{tenant}', 2, 250)"
    )
    refused = storefront(before_expand, "migrate")
    assert refused.returncode == 1
    assert "storefront migrate backfill order_line_amounts" in refused.stderr
    assert before_expand.psql("SELECT version_num FROM alembic_version") == OLDEST_SCHEMA
