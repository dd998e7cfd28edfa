"""Named backfills (app/db/backfills.py): batched, resumable, idempotent, concurrent-safe, and
refused where they would see no rows. Run on a scratch database at the expand step (0012), where
order lines may still lack `line_amount`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from app.db.backfills import BACKFILLS, BackfillRefused, BackfillRunner, BatchDone
from app.devcluster import LocalCluster
from app.ops.service import OLDEST_SCHEMA
from tests.schema_rehearsal import ScratchDatabase, scratch_database

TENANT = "00000000-0000-4000-8000-00000000000a"
PRODUCTS = 5
ORDERS = 500  # 2,500 lines

SEED = f"""
INSERT INTO tenants (id, slug, name) VALUES ('{TENANT}', 'backfill', 'Backfill');
INSERT INTO products (id, tenant_id, sku, name, price_amount, price_currency, stock)
SELECT ('00000000-0000-4000-8000-1' || lpad(p::text, 11, '0'))::uuid, '{TENANT}', 'sku-' || p,
       'P' || p, 100 * p, 'EUR', 10
FROM generate_series(1, {PRODUCTS}) AS p;
INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token, payment_key)
SELECT gen_random_uuid(), '{TENANT}', 'confirmed', 0, 'EUR', 'tok', 'k' || o
FROM generate_series(1, {ORDERS}) AS o;
INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount)
SELECT o.id, p.id, '{TENANT}', 1 + (p.price_amount / 100)::int, p.price_amount
FROM orders o CROSS JOIN products p;
"""
LINES = PRODUCTS * ORDERS
WRONG = "SELECT count(*) FROM order_lines WHERE line_amount IS DISTINCT FROM quantity * unit_amount"


@pytest.fixture
def expanded(cluster: LocalCluster) -> Iterator[ScratchDatabase]:
    """A scratch database at the expand step with LINES order lines that have no amount."""
    with scratch_database(cluster, OLDEST_SCHEMA) as database:
        database.psql(SEED)
        yield database


@pytest.fixture
async def owner(expanded: ScratchDatabase) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(expanded.owner_dsn())
    try:
        yield conn
    finally:
        await conn.close()


def runner(conn: asyncpg.Connection, batch_size: int = 1000) -> BackfillRunner:
    return BackfillRunner(conn, BACKFILLS["order_line_amounts"], batch_size=batch_size)


async def test_batches_resume_where_the_last_committed_one_ended(
    owner: asyncpg.Connection,
) -> None:
    assert await owner.fetchval(WRONG) == LINES
    seen: list[BatchDone] = []
    first = await runner(owner).run(max_batches=1, on_batch=seen.append)
    assert (first.batches, first.updated, first.total, first.done_at) == (1, 1000, 1000, None)
    assert await owner.fetchval(WRONG) == LINES - 1000
    progress = await owner.fetchrow("SELECT * FROM backfill_progress")
    assert progress["last_key"] == seen[0].last_key
    assert progress["done_at"] is None

    rest = await runner(owner).run(on_batch=seen.append)  # a new run: resumes at last_key
    assert rest.updated == LINES - 1000
    assert rest.total == LINES
    assert rest.done_at is not None
    assert await owner.fetchval(WRONG) == 0
    # 3 walking batches in all, the empty one that ends the walk, one empty sweep batch.
    assert [(b.phase, b.updated) for b in seen] == [
        ("walk", 1000),
        ("walk", 1000),
        ("walk", 500),
        ("walk", 0),
        ("sweep", 0),
    ]


async def test_running_it_again_changes_nothing(owner: asyncpg.Connection) -> None:
    await runner(owner).run()
    before = await owner.fetch("SELECT xmin::text FROM order_lines ORDER BY 1")
    again = await runner(owner).run()
    assert (again.updated, again.total) == (0, LINES)
    assert again.done_at is not None
    assert await owner.fetch("SELECT xmin::text FROM order_lines ORDER BY 1") == before


async def test_the_sweep_fills_rows_inserted_behind_the_walk(owner: asyncpg.Connection) -> None:
    """Lines a process of the previous release inserts while the walk runs may land behind its
    cursor (random order ids); the sweep that ends every run fills them."""
    await runner(owner).run(max_batches=2)
    lowest = "00000000-0000-4000-8000-000000000001"
    await owner.execute(
        "INSERT INTO orders (id, tenant_id, status, total_amount, currency, payment_token,"
        " payment_key) VALUES ($1, $2, 'confirmed', 0, 'EUR', 'tok', 'behind')",
        lowest,
        TENANT,
    )
    await owner.execute(
        "INSERT INTO order_lines (order_id, product_id, tenant_id, quantity, unit_amount)"
        " SELECT $1, id, tenant_id, 3, price_amount FROM products",
        lowest,
    )
    seen: list[BatchDone] = []
    done = await runner(owner).run(on_batch=seen.append)
    assert done.total == LINES + PRODUCTS
    assert await owner.fetchval(WRONG) == 0
    assert ("sweep", PRODUCTS) in [(b.phase, b.updated) for b in seen]


async def test_concurrent_runs_take_turns_and_fill_every_row_once(
    expanded: ScratchDatabase,
) -> None:
    conns = [await asyncpg.connect(expanded.owner_dsn()) for _ in range(2)]
    try:
        results = await asyncio.gather(*(runner(c, batch_size=100).run() for c in conns))
        assert sum(r.updated for r in results) == LINES  # no row was counted twice
        assert all(r.done_at is not None for r in results)
        assert await conns[0].fetchval(WRONG) == 0
        assert await conns[0].fetchval("SELECT rows_updated FROM backfill_progress") == LINES
    finally:
        for conn in conns:
            await conn.close()


async def test_a_role_under_row_level_security_is_refused(expanded: ScratchDatabase) -> None:
    """The app role sees no order lines without a tenant: it would find nothing to fill and
    call the backfill done."""
    dsn = expanded.cluster.dsn("primary", user="storefront_app", database=expanded.name)
    conn = await asyncpg.connect(dsn)
    try:
        with pytest.raises(BackfillRefused, match="row-level security"):
            await runner(conn).run()
    finally:
        await conn.close()
    assert expanded.psql("SELECT count(*) FROM backfill_progress") == "0"


@pytest.fixture
def before_expand(cluster: LocalCluster) -> Iterator[ScratchDatabase]:
    with scratch_database(cluster, "0007") as database:
        yield database


async def test_a_schema_without_the_progress_table_is_refused(
    before_expand: ScratchDatabase,
) -> None:
    conn = await asyncpg.connect(before_expand.owner_dsn())
    try:
        with pytest.raises(BackfillRefused, match="storefront migrate"):
            await runner(conn).run()
    finally:
        await conn.close()
