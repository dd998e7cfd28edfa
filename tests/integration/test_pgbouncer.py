"""Through a real PgBouncer in transaction mode (`database.pgbouncer: true`): routing, row-level
security over ONE shared server connection, orders, and the outbox relay (polling, no LISTEN).

PgBouncer (tests/pgbouncer.py) gives each (database, user) pair one server connection, so every
unit of work of the app, on every pooled client connection, runs on the same PostgreSQL session
per server: whatever one transaction left on that session, the next one would see.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.devcluster import LocalCluster
from app.events.relay import listen_dsn
from tests.conftest import Harness, rabbit_spy, replay_paused
from tests.pgbouncer import PgBouncer

SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write")


def _product(sku: str, stock: int = 5) -> dict[str, Any]:
    return {"sku": sku, "name": sku, "price": {"amount": 250, "currency": "EUR"}, "stock": stock}


@pytest.fixture(scope="module")
def pgbouncer(cluster: LocalCluster) -> Iterator[PgBouncer]:
    bouncer = PgBouncer(cluster, Path(cluster.base_dir).parent / "pgbouncer")
    try:
        yield bouncer
    finally:
        bouncer.stop()


@pytest.fixture
def through(pgbouncer: PgBouncer) -> dict[str, Any]:
    """Settings overrides: the app's primary and replica URLs through PgBouncer."""
    return {
        "pgbouncer": True,
        "primary": {"url": pgbouncer.url("primary")},
        "replicas": [{"url": pgbouncer.url("replica"), "weight": 1}],
    }


@pytest.fixture(autouse=True)
def no_prepared_statement_errors(pgbouncer: PgBouncer) -> Iterator[None]:
    """Whatever a test did, PgBouncer logged no prepared-statement or protocol error."""
    start = len(pgbouncer.log())
    yield
    new = pgbouncer.log()[start:]
    bad = [
        line
        for line in new.splitlines()
        if re.search(r"prepared statement|unsupported|protocol|pooler error", line, re.I)
    ]
    assert bad == [], "\n".join(bad)


@asynccontextmanager
async def _client(pgbouncer: PgBouncer, role: str) -> AsyncIterator[asyncpg.Connection]:
    """A client of PgBouncer's own, as the application role (no statement cache: PgBouncer)."""
    conn = await asyncpg.connect(pgbouncer.dsn(role), statement_cache_size=0)
    try:
        yield conn
    finally:
        await conn.close()


async def _tenant(harness: Harness, slug: str) -> tuple[str, str]:
    tenant, secret = await harness.tenant_with_key(slug, scopes=SCOPES)
    return str(tenant.id), secret


async def _acme(make_harness: Any, through: dict[str, Any], **overrides: Any) -> Harness:
    """An app through PgBouncer whose client sends tenant acme's key."""
    harness: Harness = await make_harness(**through, **overrides)
    _, harness.client.headers["X-API-Key"] = await _tenant(harness, "acme")
    return harness


async def test_reads_hit_the_replica_writes_and_strong_reads_the_primary(
    make_harness: Any, through: dict[str, Any]
) -> None:
    harness = await _acme(make_harness, through)
    product_id = await harness.product_on_replica(_product("S-1"))
    before = await harness.ops_db()
    for _ in range(5):
        response = await harness.client.get(f"/v1/products/{product_id}")
        assert response.status_code == 200, response.text
    after = await harness.ops_db()
    assert after["replica-1"]["routed_reads"] - before["replica-1"]["routed_reads"] >= 5
    assert after["primary"]["routed_reads"] == before["primary"]["routed_reads"]

    strong = await harness.client.get("/v1/products", headers={"X-Read-Consistency": "strong"})
    assert strong.status_code == 200
    final = await harness.ops_db()
    assert final["primary"]["routed_reads"] > after["primary"]["routed_reads"]
    assert final["replica-1"]["routed_reads"] == after["replica-1"]["routed_reads"]

    async with replay_paused(harness.cluster):
        created = await harness.client.post("/v1/products", json=_product("S-2"))
        assert created.status_code == 201, created.text
        token = created.headers["x-consistency-token"]
        await harness.wait_for(
            lambda: harness.container.database().replicas[0].health.lag_bytes, what="lag"
        )
        mine = await harness.client.get(
            f"/v1/products/{created.json()['id']}", headers={"X-Consistency-Token": token}
        )
        assert mine.status_code == 200, mine.text  # the primary: the replica has not replayed
        assert await harness.database_read_on_replica(created.json()["id"]) is None


async def test_alternating_tenants_on_one_server_connection_never_mix(
    make_harness: Any, through: dict[str, Any], pgbouncer: PgBouncer
) -> None:
    harness: Harness = await make_harness(**through)
    keys = {}
    for slug in ("acme", "globex"):
        _, keys[slug] = await _tenant(harness, slug)
        created = await harness.client.post(
            "/v1/products", json=_product(f"{slug}-1"), headers={"X-API-Key": keys[slug]}
        )
        assert created.status_code == 201, created.text
    harness.client.consistency_token = None
    await harness.wait_for(
        lambda: harness.database_read_on_replica(created.json()["id"]), what="replay"
    )

    async def listing(slug: str, strong: bool) -> list[str]:
        headers = {"X-API-Key": keys[slug]}
        if strong:
            headers["X-Read-Consistency"] = "strong"
        response = await harness.client.get("/v1/products", headers=headers)
        assert response.status_code == 200, response.text
        return [p["sku"] for p in response.json()["items"]]

    # Sequential and concurrent, on the replica and on the primary: each sees its own only.
    for strong in (False, True):
        for slug in ["acme", "globex"] * 10:
            assert await listing(slug, strong) == [f"{slug}-1"]
        slugs = ["acme", "globex"] * 8
        results = await asyncio.gather(*(listing(slug, strong) for slug in slugs))
        assert results == [[f"{slug}-1"] for slug in slugs]

    # One server connection per pool served all of it, and it is the one a client without a
    # tenant now gets: it sees no tenant rows and no leftover app.tenant_id.
    for role in ("primary", "replica"):
        servers = pgbouncer.servers(role)
        assert len(servers) == 1, servers
        async with _client(pgbouncer, role) as conn:
            assert await conn.fetchval("SELECT pg_backend_pid()") == int(servers[0]["remote_pid"])
            assert await conn.fetchval("SELECT count(*) FROM products") == 0
            tenant = await conn.fetchval("SELECT current_setting('app.tenant_id', true)")
            assert tenant in ("", None)


async def test_a_session_level_tenant_would_leak_through_pgbouncer(
    make_harness: Any, through: dict[str, Any], pgbouncer: PgBouncer
) -> None:
    """The control: the harness can see a leak. `set_config(..., false)` by one client stays on
    the shared server session and a second client inherits it; this is why every unit of work
    with `pgbouncer: true` is a transaction with `set_config(..., true)`."""
    harness: Harness = await make_harness(**through)
    tenant_id, secret = await _tenant(harness, "acme")
    created = await harness.client.post(
        "/v1/products", json=_product("A-1"), headers={"X-API-Key": secret}
    )
    assert created.status_code == 201
    async with _client(pgbouncer, "primary") as first, _client(pgbouncer, "primary") as second:
        try:
            await first.execute(f"SELECT set_config('app.tenant_id', '{tenant_id}', false)")
            assert await second.fetchval("SELECT count(*) FROM products") == 1  # leaked
        finally:
            await first.execute("SELECT set_config('app.tenant_id', '', false)")
    listing = await harness.client.get("/v1/products", headers={"X-API-Key": secret})
    assert [p["sku"] for p in listing.json()["items"]] == ["A-1"]


async def test_the_statement_timeout_holds_per_transaction_behind_pgbouncer(
    make_harness: Any, through: dict[str, Any], pgbouncer: PgBouncer
) -> None:
    """PgBouncer refuses `statement_timeout` as a startup parameter, so each unit of work sets
    it in its transaction: it cancels a long statement there, and the shared server session
    keeps the server's default afterwards."""
    harness: Harness = await make_harness(**through, connect={"statement_timeout_ms": 200})
    for strong in (False, True):  # the replica's pool and the primary's
        async with harness.container.uow_factory(None, read_only=True, strong=strong) as uow:
            assert await uow._conn.fetchval("SHOW statement_timeout") == "200ms"
            with pytest.raises(asyncpg.QueryCanceledError):
                await uow._conn.execute("SELECT pg_sleep(3)")
    async with harness.container.uow_factory(None) as uow:
        assert await uow._conn.fetchval("SHOW statement_timeout") == "200ms"
    for role in ("primary", "replica"):
        async with _client(pgbouncer, role) as conn:
            assert await conn.fetchval("SHOW statement_timeout") == "0"


async def test_an_order_through_pgbouncer_reserves_stock_and_replays(
    make_harness: Any, through: dict[str, Any]
) -> None:
    harness = await _acme(make_harness, through)
    created = await harness.client.post("/v1/products", json=_product("MUG", stock=5))
    product_id = created.json()["id"]
    body = {"items": [{"product_id": product_id, "quantity": 2}], "payment": {"token": "tok_ok"}}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await harness.client.post("/v1/orders", json=body, headers=key)
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "confirmed"
    replay = await harness.client.post("/v1/orders", json=body, headers=key)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    product = await harness.client.get(
        f"/v1/products/{product_id}", headers={"X-Read-Consistency": "strong"}
    )
    assert product.json()["stock"] == 3
    too_many = await harness.client.post(
        "/v1/orders",
        json={**body, "items": [{"product_id": product_id, "quantity": 4}]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    )
    assert too_many.status_code == 409
    assert too_many.json()["code"] == "inventory.insufficient"


# The CloudEvents types (with their versions) the relay sends as the AMQP `type`.
PUBLISHED = {
    "storefront.product.changed.v1",
    "storefront.order.placed.v1",
    "storefront.order.paid.v2",
}


async def test_the_relay_polls_through_pgbouncer_and_publishes_to_rabbitmq(
    make_harness: Any,
    through: dict[str, Any],
    rabbit_url: str,
    pgbouncer: PgBouncer,
    cluster: LocalCluster,
) -> None:
    suffix = uuid.uuid4().hex[:8]
    broker = {"url": rabbit_url, "exchange": f"test.pgb.{suffix}", "queue": f"test.pgb.{suffix}"}
    poll = 0.3
    outbox = {"poll_interval_seconds": poll, "relay_in_api": True}
    # Backends already listening belong to earlier tests' apps on the shared cluster.
    listeners = "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'LISTEN%'"
    listening_before = set(cluster.psql("primary", listeners).split())
    harness = await _acme(make_harness, through, broker=broker, outbox=outbox)
    async with rabbit_spy(rabbit_url, broker["exchange"]) as received:
        created = await harness.client.post("/v1/products", json=_product("MUG"))
        assert created.status_code == 201
        body = {
            "items": [{"product_id": created.json()["id"], "quantity": 1}],
            "payment": {"token": "tok_ok"},
        }
        order = await harness.client.post(
            "/v1/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert order.status_code == 201, order.text
        # Polled, not woken: a few poll intervals (generous: a shared, busy machine).
        await harness.wait_for(
            lambda: {m.type for m in received} >= PUBLISHED,
            within=20 * poll + 5,
            what="the events on RabbitMQ",
        )
    # Marked published in the relay's transaction, which commits after the broker confirmed.
    unpublished = "SELECT count(*) FROM outbox WHERE published_at IS NULL"
    await harness.wait_for(
        lambda: harness.cluster.psql("primary", unpublished) == "0", what="marked published"
    )
    # No LISTEN anywhere: neither the relay nor the invalidation listener opened one.
    assert listen_dsn(harness.container.settings().database) is None
    assert harness.container.invalidation_listener().listening is False
    assert set(harness.cluster.psql("primary", listeners).split()) <= listening_before
