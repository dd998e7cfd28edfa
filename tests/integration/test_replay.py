"""`storefront events replay --projection sales_daily`: the read model rebuilt from the retained
outbox and swapped in, against the real database."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import asyncpg
import pytest

from app.events.errors import LogIncomplete, ReplayBusy
from app.events.replay import Replayer
from app.events.repository import Event
from app.reports.service import SalesProjector
from app.settings import OutboxSettings
from tests.conftest import Harness
from tests.integration.test_cli import storefront
from tests.integration.test_events import (
    TODAY,
    _buy,
    _insert_v1_sale,
    _report,
    _shop,
    _tenant_id,
)

REPORT = f"/v1/reports/sales?from={TODAY}&to={TODAY}"


def _checksum(harness: Harness, table: str = "sales_daily", where: str = "true") -> str:
    """md5 over the table's rows in key order (as superuser: every tenant's rows)."""
    return harness.cluster.psql(
        "primary",
        "SELECT md5(coalesce(string_agg(concat_ws('|', tenant_id, day, product_id, currency,"
        f" units, revenue), ',' ORDER BY tenant_id, day, product_id, currency), '')) FROM {table}"
        f" WHERE {where}",
    ).strip()


def _count(harness: Harness, sql: str) -> int:
    return int(harness.cluster.psql("primary", sql).strip())


def _leftovers(harness: Harness) -> tuple[int, int]:
    """Rebuild rows and replay-run inbox rows still there (a finished replay leaves none)."""
    return (
        _count(harness, "SELECT count(*) FROM sales_daily_rebuild"),
        _count(harness, "SELECT count(*) FROM inbox WHERE consumer LIKE 'sales_daily:replay:%'"),
    )


async def _sales_history(harness: Harness) -> tuple[str, str]:
    """Orders, a cancellation and a v1 row from an older release, all projected live."""
    mug, cup = await _shop(harness)
    first = await _buy(harness, [(mug, 2), (cup, 1)])
    await _buy(harness, [(cup, 4)])
    await _buy(harness, [(mug, 1), (cup, 1)])
    cancelled = await harness.client.post(f"/v1/orders/{first['id']}/cancel")
    assert cancelled.status_code == 200
    _insert_v1_sale(harness, _tenant_id(harness), mug, 3)
    await harness.container.outbox_relay().drain()
    return mug, cup


async def test_a_replay_from_scratch_equals_the_live_table_twice_in_a_row(
    harness: Harness,
) -> None:
    mug, cup = await _sales_history(harness)
    live, report = _checksum(harness), await _report(harness)
    day = str(TODAY)
    assert report == {(day, mug): (4, 4800), (day, cup): (5, 1500)}
    for _ in range(2):
        [result] = await harness.container.replayer().replay("sales_daily")
        assert result.events == 5  # 3 order.paid (one of them v1 upcast) + 1 order.cancelled
        assert result.live_checksum == result.rebuilt_checksum
        assert _checksum(harness) == live
        assert await _report(harness) == report
        assert _leftovers(harness) == (0, 0)
    # The live consumer still counts every event once: redelivering them all changes nothing.
    harness.cluster.psql("primary", "UPDATE outbox SET published_at = NULL")
    assert await harness.container.outbox_relay().drain() > 0
    assert _checksum(harness) == live

    # From scratch indeed: a damaged live table is rebuilt from the log alone.
    harness.cluster.psql("primary", f"DELETE FROM sales_daily WHERE product_id = '{mug}'")
    harness.cluster.psql("primary", f"UPDATE sales_daily SET units = 99 WHERE product_id = '{cup}'")
    [repaired] = await harness.container.replayer().replay("sales_daily")
    assert repaired.live_checksum != repaired.rebuilt_checksum
    assert _checksum(harness) == live


class Interleaved:
    """The real projector, but the first time the replay applies an event to its rebuild, the
    report is read (the old table must answer) and an order is placed and projected live (the
    rebuild must catch up with it before the swap)."""

    def __init__(self, harness: Harness, mug: str, real: SalesProjector) -> None:
        self.name, self.topics = real.name, real.topics
        self.harness, self.mug, self.real = harness, mug, real
        self.during: dict[tuple[str, str], tuple[int, int]] | None = None

    async def apply(self, uow: Any, event: Event, run: uuid.UUID | None = None) -> None:
        if run is not None and self.during is None:
            self.during = await _report(self.harness)
            await _buy(self.harness, [(self.mug, 10)])
            assert await self.harness.container.outbox_relay().drain() == 2
        await self.real.apply(uow, event, run)

    async def swap(self, uow: Any, run: uuid.UUID) -> tuple[str, str]:
        return await self.real.swap(uow, run)

    async def discard(self, uow: Any, run: uuid.UUID) -> None:
        await self.real.discard(uow, run)


async def test_the_report_keeps_answering_from_the_old_table_during_a_rebuild(
    make_harness: Any,
) -> None:
    harness = await make_harness(outbox={"replay_batch_size": 2})
    mug, cup = await _sales_history(harness)
    # The live table is off (as after a projection bug): the replay will correct it.
    harness.cluster.psql(
        "primary", f"UPDATE sales_daily SET units = units + 100 WHERE product_id = '{mug}'"
    )
    day = str(TODAY)
    damaged = await _report(harness)
    assert damaged[(day, mug)] == (104, 4800)

    interleaved = Interleaved(harness, mug, harness.container.sales_projector())
    replayer = Replayer(
        harness.container.uow_factory, [interleaved], OutboxSettings(replay_batch_size=2)
    )
    statuses: list[int] = []
    done = asyncio.Event()

    async def read_all_along() -> None:
        while not done.is_set():
            response = await harness.client.get(REPORT)
            statuses.append(response.status_code)
            await asyncio.sleep(0)

    reader = asyncio.create_task(read_all_along())
    try:
        [result] = await replayer.replay("sales_daily")
    finally:
        done.set()
        await reader
    assert statuses
    assert set(statuses) == {200}
    assert interleaved.during == damaged  # the old table served while the new one was built
    assert result.events == 6  # the five before, and the order placed during the rebuild
    assert await harness.container.outbox_relay().drain() == 0
    expected = {(day, mug): (14, 16800), (day, cup): (5, 1500)}
    assert await _report(harness) == expected  # caught up, counted once
    swapped = _checksum(harness)
    [again] = await harness.container.replayer().replay("sales_daily")
    assert again.live_checksum == again.rebuilt_checksum == result.rebuilt_checksum
    assert _checksum(harness) == swapped
    assert _leftovers(harness) == (0, 0)


async def test_a_tenant_replay_rebuilds_and_swaps_only_that_tenant(harness: Harness) -> None:
    await _sales_history(harness)
    _, secret = await harness.tenant_with_key(
        "bolt", scopes=("catalog:write", "orders:write", "reports:read")
    )
    harness.client.headers["X-API-Key"] = secret
    created = await harness.client.post(
        "/v1/products",
        json={"sku": "BOX", "name": "Box", "price": {"amount": 50, "currency": "EUR"}, "stock": 9},
    )
    await _buy(harness, [(created.json()["id"], 2)])
    await harness.container.outbox_relay().drain()
    acme, bolt = (f"tenant_id = '{_tenant_id(harness, slug)}'" for slug in ("acme", "bolt"))
    right = {slug: _checksum(harness, where=w) for slug, w in (("acme", acme), ("bolt", bolt))}
    harness.cluster.psql("primary", "UPDATE sales_daily SET units = units + 1")

    [result] = await harness.container.replayer().replay("sales_daily", "bolt")
    assert (result.slug, result.events) == ("bolt", 1)
    assert _checksum(harness, where=bolt) == right["bolt"]
    assert _checksum(harness, where=acme) != right["acme"]  # not touched
    both = await harness.container.replayer().replay("sales_daily")
    assert sorted(x.slug for x in both) == ["acme", "bolt"]
    assert _checksum(harness, where=acme) == right["acme"]


async def test_the_swap_waits_for_the_live_consumer_and_gives_up_cleanly(
    make_harness: Any,
) -> None:
    harness = await make_harness(outbox={"replay_lock_timeout_ms": 50})
    await _sales_history(harness)
    live = _checksum(harness)
    harness.cluster.psql("primary", "UPDATE sales_daily SET units = units + 1")
    damaged = _checksum(harness)
    # A consumer in the middle of applying an event holds the tenant's lock (shared).
    consumer = await asyncpg.connect(harness.cluster.dsn("primary"))
    try:
        async with consumer.transaction():
            await consumer.execute(
                "SELECT pg_advisory_xact_lock_shared(hashtextextended('sales_daily/' || $1, 0))",
                _tenant_id(harness),
            )
            with pytest.raises(ReplayBusy):
                await harness.container.replayer().replay("sales_daily", "acme")
    finally:
        await consumer.close()
    assert _checksum(harness) == damaged  # nothing swapped
    assert _leftovers(harness) == (0, 0)
    await harness.container.replayer().replay("sales_daily", "acme")  # the lock is gone
    assert _checksum(harness) == live


async def test_purged_events_are_kept_by_default_and_a_replay_refuses_once_they_are_gone(
    make_harness: Any,
) -> None:
    harness = await make_harness()
    await _sales_history(harness)
    harness.clock.advance(days=400)
    assert await harness.container.outbox_relay().purge() == 0  # retention_days: null

    keeping = await make_harness(outbox={"retention_days": 30})
    assert await keeping.container.outbox_relay().purge() == 0  # nothing is 30 days old
    keeping.clock.advance(days=31)
    assert await keeping.container.outbox_relay().purge() > 0
    before = _checksum(keeping)
    with pytest.raises(LogIncomplete):
        await keeping.container.replayer().replay("sales_daily")
    assert _checksum(keeping) == before


async def test_replay_from_the_cli(harness: Harness) -> None:
    await _sales_history(harness)
    live = _checksum(harness)
    replayed = storefront(harness, "events", "replay", "--projection", "sales_daily", "--json")
    assert replayed.returncode == 0, replayed.stderr
    [row] = json.loads(replayed.stdout)
    assert (row["tenant"], row["events"], row["changed"]) == ("acme", 5, False)
    assert _checksum(harness) == live

    text = storefront(
        harness, "events", "replay", "--projection", "sales_daily", "--tenant", "acme"
    )
    assert text.returncode == 0, text.stderr
    assert (
        "acme: 5 event(s) replayed, 0 left out; rebuilt table swapped in, identical" in text.stdout
    )

    for args, code in (
        (("--projection", "nope"), "events.unknown_projection"),
        (("--projection", "sales_daily", "--tenant", "nobody"), "tenant.not_found"),
    ):
        failed = storefront(harness, "events", "replay", *args)
        assert failed.returncode == 1
        assert failed.stderr.strip().startswith(f"error: {code}"), failed.stderr
        assert len(failed.stderr.strip().splitlines()) == 1

    harness.cluster.psql("primary", "DELETE FROM outbox WHERE topic = 'order.cancelled'")
    refused = storefront(harness, "events", "replay", "--projection", "sales_daily")
    assert refused.returncode == 1
    assert refused.stderr.strip().startswith("error: events.log_incomplete"), refused.stderr
    assert _checksum(harness) == live
