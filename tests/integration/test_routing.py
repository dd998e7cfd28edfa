"""Read routing: replicas serve reads, the primary serves writes and read-your-writes."""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import warnings
from collections.abc import Awaitable
from typing import Any

import httpx
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from tests.conftest import Harness, raw_connect, replay_paused

SHIRT = {"sku": "S-1", "name": "Shirt", "price": {"amount": 100, "currency": "EUR"}, "stock": 1}


async def on_primary_only(harness: Harness, request: Awaitable[httpx.Response]) -> httpx.Response:
    """Send `request` and assert the primary served its reads and the replica none."""
    before = await harness.ops_db()
    response = await request
    after = await harness.ops_db()
    assert after["primary"]["routed_reads"] > before["primary"]["routed_reads"]
    assert after["replica-1"]["routed_reads"] == before["replica-1"]["routed_reads"]
    return response


async def test_reads_hit_the_replica_and_writes_the_primary(
    harness: Harness, acme: dict[str, Any]
) -> None:
    product_id = await harness.product_on_replica(SHIRT)
    before = await harness.ops_db()
    for _ in range(5):
        response = await harness.client.get(f"/v1/products/{product_id}")
        assert response.status_code == 200
    after = await harness.ops_db()
    # Each request also looks its API key up (the key cache is off in tests): also a read.
    assert after["replica-1"]["routed_reads"] - before["replica-1"]["routed_reads"] >= 5
    assert after["primary"]["routed_reads"] == before["primary"]["routed_reads"]


async def test_strong_consistency_header_forces_the_primary(
    harness: Harness, acme: dict[str, Any]
) -> None:
    response = await on_primary_only(
        harness, harness.client.get("/v1/products", headers={"X-Read-Consistency": "strong"})
    )
    assert response.status_code == 200


async def test_consistency_token_reads_own_write_while_replica_replay_is_paused(
    harness: Harness, acme: dict[str, Any]
) -> None:
    async with replay_paused(harness.cluster):
        created = await harness.client.post("/v1/products", json=SHIRT)
        assert created.status_code == 201
        token = created.headers["x-consistency-token"]
        product_id = created.json()["id"]
        # Let the monitor see the replica's (stuck) replay position.
        await harness.wait_for(
            lambda: harness.container.database().replicas[0].health.lag_bytes,
            what="replica lag to show",
        )

        with_token = await on_primary_only(
            harness,
            harness.client.get(
                f"/v1/products/{product_id}", headers={"X-Consistency-Token": token}
            ),
        )
        assert with_token.status_code == 200
        assert with_token.json()["sku"] == "S-1"

        # Without the token the replica may serve it: it has not replayed the insert yet.
        on_replica = await harness.database_read_on_replica(product_id)
        assert on_replica is None


async def test_lagging_replica_is_skipped(make_harness: Any) -> None:
    harness: Harness = await make_harness(routing={"max_replica_lag_seconds": 0.0})
    _tenant, secret = await harness.tenant_with_key("acme")
    harness.client.headers["X-API-Key"] = secret
    async with replay_paused(harness.cluster):
        created = await harness.client.post("/v1/products", json=SHIRT)
        assert created.status_code == 201
        node = harness.container.database().replicas[0]
        await harness.wait_for(lambda: (node.health.lag_seconds or 0) > 0, what="lag")
        harness.client.consistency_token = None
        response = await on_primary_only(
            harness, harness.client.get("/v1/products", headers={"X-Consistency-Token": ""})
        )
        assert response.status_code == 200


async def _backend_pid(node: Any) -> int:
    async with node.connection() as fairy:
        pid: int = await fairy.driver_connection.fetchval("SELECT pg_backend_pid()")
        return pid


async def test_idle_connections_are_reused_recycled_by_age_and_dropped_with_the_pool(
    harness: Harness,
) -> None:
    """The node keeps idle connections out of SQLAlchemy's pool (app/db/nodes.py): the same
    server connection serves sequential work, is counted idle, is recycled past `pool.recycle`
    (its connect time moved back, as a clock past the TTL would see it) and is dropped when the
    node starts over after an outage."""
    from app.db.nodes import _CONNECTED_AT

    node = harness.container.database().replicas[0]
    await node.close_idle()
    first = await _backend_pid(node)
    assert await _backend_pid(node) == first  # reused
    status = node.pool_status()
    assert status["checked_out"] == 0
    assert status["idle"] >= 1
    idle = node._idle[-1]
    idle.info[_CONNECTED_AT] -= node._recycle + 1
    recycled = await _backend_pid(node)
    assert recycled != first
    await node.mark_unreachable(ConnectionError("test"))
    assert not node._idle
    node.health.reachable = True
    assert await _backend_pid(node) != recycled


async def test_a_burst_leaves_at_most_size_idle_connections(harness: Harness) -> None:
    """Overflow connections opened by a burst close when it ends: the node's idle list and the
    pool's together hold at most `pool.size` connections."""
    node = harness.container.database().replicas[0]
    size = harness.container.settings().database.replica_pool.size
    fairies = [await node.acquire() for _ in range(node.capacity)]
    for fairy in fairies:
        await node.release(fairy, None)
    status = node.pool_status()
    assert status["checked_out"] == 0
    assert status["idle"] <= size
    assert status["overflow"] == 0


async def test_an_idle_connection_made_before_a_pool_invalidation_is_not_reused(
    harness: Harness,
) -> None:
    """A disconnect seen through SQLAlchemy invalidates its whole pool (every connection made
    before it is recycled at the pool's checkout): the node's idle connections must follow."""
    node = harness.container.database().replicas[0]
    await node.close_idle()
    first = await _backend_pid(node)
    assert await _backend_pid(node) == first  # idle, reused
    async with node.engine.connect() as conn:  # another pooled connection, through Core
        doomed = await conn.scalar(text("SELECT pg_backend_pid()"))
        killer = await raw_connect(harness.cluster, "replica", "postgres")
        try:
            assert await killer.fetchval("SELECT pg_terminate_backend($1, 5000)", doomed)
        finally:
            await killer.close()
        with pytest.raises(sa_exc.DBAPIError) as caught:
            await conn.execute(text("SELECT 1"))
    assert caught.value.connection_invalidated  # SQLAlchemy saw a disconnect: pool invalidated
    assert await _backend_pid(node) != first


async def _backend_gone(harness: Harness, pid: int) -> bool:
    conn = await raw_connect(harness.cluster, "replica", "postgres")
    try:
        gone: bool = await conn.fetchval(
            "SELECT count(*) = 0 FROM pg_stat_activity WHERE pid = $1", pid
        )
        return gone
    finally:
        await conn.close()


async def test_a_cancelled_close_of_a_stale_idle_connection_leaks_nothing(
    make_harness: Any,
) -> None:
    """A request cancelled while it closes a stale idle connection (a client gone, a timeout):
    the connection is gone from the server and from the pool's count, no slot is lost (every
    slot can be filled at once afterwards) and nothing is left for the garbage collector."""
    from app.db.nodes import _CONNECTED_AT

    harness: Harness = await make_harness(
        replica_pool={"size": 2, "max_overflow": 2},
        routing={"health_interval_seconds": 3600},  # no probe may take the stale connection
    )
    node = harness.container.database().replicas[0]
    await node.close_idle()
    stale = await node.acquire()
    pid = await stale.driver_connection.fetchval("SELECT pg_backend_pid()")
    await node.release(stale, None)
    assert list(node._idle) == [stale]
    # The pool's queue full: closing the stale connection is then real I/O (the pool has no
    # room for it), which a stopped backend holds up until the cancellation.
    others = [await node.engine.raw_connection() for _ in range(2)]
    for other in others:
        other.close()
    stale.info[_CONNECTED_AT] -= node._recycle + 1
    os.kill(pid, signal.SIGSTOP)
    try:
        request = asyncio.create_task(node.acquire())
        await asyncio.sleep(0.3)
        assert not request.done()  # held in the close
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
    finally:
        os.kill(pid, signal.SIGCONT)
    assert not node._idle
    status = node.pool_status()
    assert (status["checked_out"], status["overflow"]) == (0, 0), status
    await harness.wait_for(lambda: _backend_gone(harness, pid), what="the backend to go")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del stale, request
        gc.collect()
    assert not [w for w in caught if "non-checked-in" in str(w.message)]
    every = [await asyncio.wait_for(node.acquire(), 2) for _ in range(node.capacity)]
    for fairy in every:
        await node.release(fairy, None)
