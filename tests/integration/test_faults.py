"""Faults on the real cluster: replica down, primary down, pool exhausted.

Each test puts the cluster back the way it found it (servers running, replica streaming).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from app.devcluster import LocalCluster
from tests.conftest import OPERATOR_TOKEN, Harness, problem, raw_connect
from tests.served_app import ServedApp

SHIRT = {"name": "Shirt", "price": {"amount": 100, "currency": "EUR"}, "stock": 1}


async def _streaming_again(cluster: LocalCluster) -> None:
    """Wait until a write on the primary shows up on the replica."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            primary = await raw_connect(cluster, "primary", "postgres")
            try:
                await primary.execute("SELECT txid_current()")  # forces a commit record
                lsn = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
            finally:
                await primary.close()
            replica = await raw_connect(cluster, "replica", "postgres")
            try:
                replayed = await replica.fetchval(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn
                )
            finally:
                await replica.close()
            if replayed:
                return
        except Exception:  # a server still starting: try again
            pass
        await asyncio.sleep(0.2)
    raise AssertionError("replica did not resume streaming")


async def test_replica_down_reads_fall_back_then_return(
    harness: Harness, acme: dict[str, Any]
) -> None:
    product_id = await harness.product_on_replica({**SHIRT, "sku": "R-1"})
    cluster = harness.cluster
    try:
        await asyncio.to_thread(cluster.stop, "replica")

        async def replica_unhealthy() -> bool:
            return not (await harness.ops_db())["replica-1"]["healthy"]

        await harness.wait_for(replica_unhealthy, within=5, what="replica marked unhealthy")
        for _ in range(5):
            response = await harness.client.get(f"/v1/products/{product_id}")
            assert response.status_code == 200, response.text
        engines = await harness.ops_db()
        assert engines["replica-1"]["healthy"] is False
        assert engines["replica-1"]["error"]

        await asyncio.to_thread(cluster.start, "replica")

        async def replica_serving() -> bool:
            before = (await harness.ops_db())["replica-1"]["routed_reads"]
            await harness.client.get(f"/v1/products/{product_id}")
            return bool((await harness.ops_db())["replica-1"]["routed_reads"] > before)

        # Back within a few health intervals (0.2 s here); the bound is generous so a loaded CI
        # machine does not turn scheduling delay into a failure (no tight timing asserts).
        await harness.wait_for(replica_serving, within=5, what="reads back on the replica")
    finally:
        await asyncio.to_thread(cluster.start, "replica")
        await _streaming_again(cluster)


async def test_reads_on_connections_the_replica_closed_are_retried_on_the_primary(
    harness: Harness, acme: dict[str, Any]
) -> None:
    """Stale pooled connections (a replica restart, an idle timeout, a killed backend): the
    first statement on each fails; the read is retried once on the primary, never a 503."""
    product_id = await harness.product_on_replica({**SHIRT, "sku": "R-2"})
    url = f"/v1/products/{product_id}"
    warm = await asyncio.gather(*(harness.client.get(url) for _ in range(4)))
    assert {response.status_code for response in warm} == {200}
    harness.cluster.psql(
        "replica",
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE usename = 'storefront_app' AND pid <> pg_backend_pid()",
    )
    router = harness.container.database().router
    before = router.fallbacks["read_retried"]
    after_kill = [await harness.client.get(url) for _ in range(4)]
    assert [response.status_code for response in after_kill] == [200] * 4, after_kill[0].text
    assert router.fallbacks["read_retried"] > before
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert 'storefront_db_read_fallbacks_total{reason="read_retried"}' in metrics.text


async def test_a_replica_killed_under_32_readers_fails_no_read(
    harness: Harness, acme: dict[str, Any]
) -> None:
    """`pg_ctl -m immediate` on the replica while 32 clients read for 10 s (the kill at 2 s):
    every read is a 200 (the ones on the dying replica are retried on the primary, later ones
    are routed there)."""
    product_id = await harness.product_on_replica({**SHIRT, "sku": "R-3"})
    url = f"/v1/products/{product_id}"
    cluster = harness.cluster
    statuses: list[int] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            statuses.append((await harness.client.get(url)).status_code)

    readers = [asyncio.create_task(reader()) for _ in range(32)]
    try:
        await asyncio.sleep(2.0)
        served_before = len(statuses)
        await asyncio.to_thread(cluster.stop, "replica", "immediate")
        await asyncio.sleep(8.0)
        stop.set()
        await asyncio.gather(*readers)
        assert served_before > 0
        assert len(statuses) > served_before  # reads went on after the kill
        assert set(statuses) == {200}, Counter(statuses)
    finally:
        stop.set()
        await asyncio.gather(*readers, return_exceptions=True)
        await asyncio.to_thread(cluster.start, "replica")
        await _streaming_again(cluster)


# The clients of the primary-kill test pause between requests (readers this long, the writer a
# quarter of it): see the test's docstring.
READER_PAUSE = 0.2


@dataclass
class _Write:
    at: float  # monotonic start
    seconds: float
    response: httpx.Response


async def test_primary_killed_under_readers_and_a_writer(
    harness: Harness, acme: dict[str, Any], served_apps: Callable[..., ServedApp]
) -> None:
    """`pg_ctl -m immediate` on the primary of a served app (a real process and socket) while
    32 clients read by id and one client writes: every read is a 200 (the replica keeps
    serving), every write is a 201 or a 503 problem+json `database.unavailable` with
    Retry-After, each answered within 1 s. The reads are replica-routed (no consistency token,
    no `X-Read-Consistency: strong`); strong reads and reads pinned by a token the replica has
    not replayed need the primary and are not part of this promise.

    The clients pause between requests (about 160 reads/s offered): flat out, 32 clients keep
    the app's one worker saturated, and then every request, before the kill as after it, waits
    about clients / throughput in its event loop (measured: a 201 took 0.9 s before the kill
    while another benchmark shared the 2 cores). That is load, not the outage, and it would
    make the 1 s bound a statement about the machine. Unsaturated, a 503 takes a few ms (the
    connect is refused, then the breaker is open). `python -m bench.drills --phase b` runs
    the flat-out version and prints the longest request."""
    app = served_apps()
    cluster = harness.cluster
    client = httpx.AsyncClient(
        base_url=app.url,
        headers={"X-API-Key": acme["key"]},
        timeout=10.0,  # a slow answer is measured, not turned into an exception
        limits=httpx.Limits(max_connections=64),
    )
    product_id = await harness.product_on_replica({**SHIRT, "sku": "K-1"})
    reads: list[tuple[float, int]] = []
    writes: list[_Write] = []
    stop = asyncio.Event()

    async def reader() -> None:
        while not stop.is_set():
            response = await client.get(f"/v1/products/{product_id}")
            reads.append((time.monotonic(), response.status_code))
            await asyncio.sleep(READER_PAUSE)

    async def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            started = time.monotonic()
            response = await client.post("/v1/products", json={**SHIRT, "sku": f"KW-{n}"})
            writes.append(_Write(started, time.monotonic() - started, response))
            await asyncio.sleep(READER_PAUSE / 4)

    tasks = [asyncio.create_task(reader()) for _ in range(32)]
    tasks.append(asyncio.create_task(writer()))
    try:
        await asyncio.sleep(1.0)
        killed_at = time.monotonic()
        await asyncio.to_thread(cluster.stop, "primary", "immediate")
        await asyncio.sleep(3.0)
        stop.set()
        await asyncio.gather(*tasks)

        assert any(at < killed_at for at, _ in reads), "no read before the kill"
        after = [status for at, status in reads if at >= killed_at]
        assert after, "no read after the kill"
        assert set(after) == {200}, Counter(after)
        assert [w for w in writes if w.at < killed_at and w.response.status_code == 201]
        outage = [w for w in writes if w.at >= killed_at]
        assert {w.response.status_code for w in outage} <= {201, 503}, [
            w.response.text for w in outage if w.response.status_code not in (201, 503)
        ]
        refused = [w.response for w in outage if w.response.status_code == 503]
        assert refused, "no write was refused during the outage"
        for response in refused:
            assert problem(response)["code"] == "database.unavailable"
            assert int(response.headers["retry-after"]) >= 1
        slow = [
            round(w.seconds, 3) for w in writes if w.at + w.seconds >= killed_at and w.seconds > 1.0
        ]
        assert not slow, f"writes slower than 1 s in the outage: {slow}"
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.aclose()
        await asyncio.to_thread(cluster.start, "primary")
        await _streaming_again(cluster)


async def test_primary_down_writes_fail_fast_reads_continue(
    harness: Harness, acme: dict[str, Any]
) -> None:
    product_id = await harness.product_on_replica({**SHIRT, "sku": "P-1"})
    # Warm the key into the replica path before the outage.
    assert (await harness.client.get(f"/v1/products/{product_id}")).status_code == 200
    cluster = harness.cluster
    try:
        await asyncio.to_thread(cluster.stop, "primary")
        # A burst that races the breaker opening: every answer is a 503 problem, none a 500.
        burst = await asyncio.gather(
            *(
                harness.client.post("/v1/products", json={**SHIRT, "sku": f"X-{i}"})
                for i in range(10)
            )
        )
        assert {r.status_code for r in burst} == {503}, [r.text for r in burst]
        assert {problem(r)["code"] for r in burst} == {"database.unavailable"}

        async def breaker_open() -> bool:
            return bool((await harness.ops_db())["primary"]["breaker"]["state"] == "open")

        # The health monitor's probes and failing requests open the breaker.
        await harness.wait_for(breaker_open, within=5, what="primary breaker open")
        for i in range(5):
            started = time.monotonic()
            response = await harness.client.post("/v1/products", json={**SHIRT, "sku": f"D-{i}"})
            elapsed = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert problem(response)["code"] == "database.unavailable"
            assert int(response.headers["retry-after"]) >= 1
            assert elapsed < 1.0

        read = await harness.client.get(f"/v1/products/{product_id}")
        assert read.status_code == 200, read.text
        listing = await harness.client.get("/v1/products")
        assert listing.status_code == 200

        await asyncio.to_thread(cluster.start, "primary")
        reset = harness.container.settings().database.breaker.reset_timeout_seconds

        async def writes_work() -> bool:
            response = await harness.client.post(
                "/v1/products", json={**SHIRT, "sku": f"U-{uuid.uuid4().hex[:8]}"}
            )
            return response.status_code == 201

        await harness.wait_for(writes_work, within=reset + 5, what="writes after restart")
        # Nothing leaked: every connection and queue slot came back.
        assert (await harness.ops_db())["primary"]["pool"]["checked_out"] == 0
    finally:
        await asyncio.to_thread(cluster.start, "primary")
        await _streaming_again(cluster)


async def test_pool_exhaustion_is_a_fast_503_then_recovers(make_harness: Any) -> None:
    harness: Harness = await make_harness(pool={"size": 1, "max_overflow": 0, "timeout": 0.5})
    _, secret = await harness.tenant_with_key("acme")
    harness.client.headers["X-API-Key"] = secret
    primary = harness.container.database().primary
    async with primary.connection():
        started = time.monotonic()
        response = await harness.client.post("/v1/products", json={**SHIRT, "sku": "B-1"})
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert problem(response)["code"] == "database.busy"
    assert response.headers["retry-after"] == "1"
    assert 0.45 <= elapsed < 1.5
    assert primary.breaker.state == "closed"  # back-pressure is not an outage
    after = await harness.client.post("/v1/products", json={**SHIRT, "sku": "B-2"})
    assert after.status_code == 201, after.text
    assert (await harness.ops_db())["primary"]["pool_timeouts"] >= 1


async def test_past_the_concurrency_limit_requests_wait_then_get_503(make_harness: Any) -> None:
    harness: Harness = await make_harness(
        server={"max_concurrent_requests": 1, "queue_timeout_seconds": 0.2},
        pool={"size": 1, "max_overflow": 0, "timeout": 2.0},
    )
    _, secret = await harness.tenant_with_key("acme")
    harness.client.headers["X-API-Key"] = secret
    primary = harness.container.database().primary
    async with primary.connection():
        # The only request allowed in waits for the held primary connection...
        inside = asyncio.create_task(
            harness.client.post("/v1/products", json={**SHIRT, "sku": "W-1"})
        )
        await harness.wait_for(lambda: primary.waiting == 1, what="request inside the door")
        # ...so the next waits at the door, then gets a fast 503 with Retry-After.
        started = time.monotonic()
        turned_away = await harness.client.get("/v1/products")
        assert time.monotonic() - started < 1.0
        assert turned_away.status_code == 503
        assert problem(turned_away)["code"] == "server.busy"
        assert turned_away.headers["retry-after"] == "1"
        # Operators still get through.
        assert (await harness.client.get("/health/live")).status_code == 200
    assert (await inside).status_code == 201
    assert (await harness.client.get("/v1/products")).status_code == 200
