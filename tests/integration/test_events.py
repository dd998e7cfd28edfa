"""Outbox, relay, inbox and the sales read model, against the real database (and RabbitMQ)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import pytest
from cloudevents.core.bindings import rabbitmq
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from dependency_injector import providers
from jsonschema import Draft202012Validator, FormatChecker

from app.events.bus import consume_from_rabbit
from app.events.relay import OutboxRelay
from app.events.repository import Event
from tests.conftest import OPERATOR_TOKEN, Harness, problem, rabbit_spy

SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write", "reports:read")
TODAY = datetime.now(UTC).date()


async def _shop(harness: Harness) -> tuple[str, str]:
    _, secret = await harness.tenant_with_key("acme", scopes=SCOPES)
    harness.client.headers["X-API-Key"] = secret
    ids = []
    for sku, price in (("MUG", 1200), ("CUP", 300)):
        created = await harness.client.post(
            "/v1/products",
            json={
                "sku": sku,
                "name": sku,
                "price": {"amount": price, "currency": "EUR"},
                "stock": 50,
            },
        )
        ids.append(created.json()["id"])
    # Out of the way: the products' own `product.changed` events.
    await harness.container.outbox_relay().drain()
    return ids[0], ids[1]


async def _buy(harness: Harness, lines: list[tuple[str, int]]) -> dict[str, Any]:
    body = {
        "items": [{"product_id": p, "quantity": q} for p, q in lines],
        "payment": {"token": "tok_ok"},
    }
    response = await harness.client.post(
        "/v1/orders", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
    )
    assert response.status_code == 201, response.text
    order: dict[str, Any] = response.json()
    return order


async def _report(harness: Harness) -> dict[tuple[str, str], tuple[int, int]]:
    response = await harness.client.get(
        f"/v1/reports/sales?from={TODAY}&to={TODAY}", headers={"X-Read-Consistency": "strong"}
    )
    assert response.status_code == 200, response.text
    return {
        (item["day"], item["product_id"]): (item["units"], item["revenue"]["amount"])
        for item in response.json()["items"]
    }


def _outbox(harness: Harness) -> list[str]:
    rows = harness.cluster.psql(
        "primary",
        "SELECT topic || ':' || CASE WHEN published_at IS NULL THEN 'f' ELSE 't' END"
        " FROM outbox WHERE topic LIKE 'order.%' ORDER BY seq",
    )
    return [line.strip() for line in rows.splitlines() if line.strip()]


async def test_events_are_written_with_the_order_and_feed_the_report(harness: Harness) -> None:
    mug, cup = await _shop(harness)
    first = await _buy(harness, [(mug, 2), (cup, 1)])
    await _buy(harness, [(mug, 1)])
    assert _outbox(harness) == [
        "order.placed:f",
        "order.paid:f",
        "order.placed:f",
        "order.paid:f",
    ]
    assert await _report(harness) == {}  # the read model trails the orders

    assert await harness.container.outbox_relay().drain() == 4
    assert all(line.endswith(":t") for line in _outbox(harness))
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert 'storefront_outbox_events_total{result="published"} 6.0' in metrics.text  # + 2 products
    day = str(TODAY)
    assert await _report(harness) == {(day, mug): (3, 3600), (day, cup): (1, 300)}

    # A cancellation takes its lines back out: the report = confirmed orders - cancellations.
    cancelled = await harness.client.post(f"/v1/orders/{first['id']}/cancel")
    assert cancelled.status_code == 200
    await harness.container.outbox_relay().drain()
    assert await _report(harness) == {(day, mug): (1, 1200), (day, cup): (0, 0)}


@contextmanager
def publishing_through(harness: Harness, wrapper: Any) -> Iterator[OutboxRelay]:
    """A relay whose publisher is `wrapper(real publisher)`, through a container override."""
    container = harness.container
    real = container.event_publisher()
    with container.event_publisher.override(providers.Object(wrapper(real))):
        container.outbox_relay.reset()
        yield container.outbox_relay()
    container.outbox_relay.reset()


class DiesAfterPublishing:
    """Publishes; once `order.paid` is out the process 'dies', before the relay marks anything
    published (its transaction never commits)."""

    def __init__(self, real: Any) -> None:
        self.real = real

    async def publish(self, events: list[Event]) -> None:
        await self.real.publish(events)
        if any(event.topic == "order.paid" for event in events):
            raise asyncio.CancelledError


async def test_a_relay_killed_after_publishing_delivers_again_and_counts_once(
    harness: Harness,
) -> None:
    mug, _ = await _shop(harness)
    await _buy(harness, [(mug, 2)])
    with (
        publishing_through(harness, DiesAfterPublishing) as dying,
        pytest.raises(asyncio.CancelledError),
    ):
        await dying.run_once()
    relay = harness.container.outbox_relay()
    assert all(line.endswith(":f") for line in _outbox(harness))  # not marked
    assert await _report(harness) == {(str(TODAY), mug): (2, 2400)}  # but delivered once
    assert await relay.drain() == 2  # delivered again...
    assert await _report(harness) == {(str(TODAY), mug): (2, 2400)}  # ...and ignored
    inbox = harness.cluster.psql("primary", "SELECT count(*) FROM inbox")
    assert inbox.strip() == "1"  # order.paid only (order.placed is not a sales event)


async def test_report_period_is_validated(harness: Harness) -> None:
    await _shop(harness)
    for query in ("from=2026-02-01&to=2026-01-01", "from=2020-01-01&to=2026-01-01", "from=x&to=y"):
        response = await harness.client.get(f"/v1/reports/sales?{query}")
        assert response.status_code == 422, query
        problem(response)
    missing = await harness.client.get("/v1/reports/sales")
    assert missing.status_code == 422


async def test_notify_wakes_the_relay_before_its_poll(make_harness: Any) -> None:
    harness = await make_harness(outbox={"poll_interval_seconds": 30, "relay_in_api": True})
    mug, _ = await _shop(harness)
    await asyncio.sleep(0.5)  # the relay drained and now waits (30 s) for a NOTIFY
    await _buy(harness, [(mug, 1)])
    await harness.wait_for(
        lambda: all(line.endswith(":t") for line in _outbox(harness)), within=5, what="relay"
    )


async def _on_rabbit(make_harness: Any, rabbit_url: str) -> tuple[Harness, dict[str, str]]:
    """An app publishing to an exchange and queue of its own on the test's RabbitMQ."""
    suffix = uuid.uuid4().hex[:8]
    broker = {"url": rabbit_url, "exchange": f"test.events.{suffix}", "queue": f"test.q.{suffix}"}
    harness: Harness = await make_harness(broker=broker)
    return harness, broker


def _projecting(harness: Harness, rabbit_url: str, broker: dict[str, str]) -> Any:
    """The read model's own consumer on that queue, as the worker runs it."""
    return consume_from_rabbit(
        rabbit_url, broker["exchange"], broker["queue"], harness.container.sales_projector().handle
    )


async def test_events_reach_rabbitmq_with_message_ids_and_none_is_lost(
    make_harness: Any, rabbit_url: str
) -> None:
    harness, broker = await _on_rabbit(make_harness, rabbit_url)
    async with (
        rabbit_spy(rabbit_url, broker["exchange"], "order.*") as received,
        rabbit_spy(rabbit_url, broker["exchange"]) as everything,
    ):
        consumer = _projecting(harness, rabbit_url, broker)
        async with consumer:
            mug, _ = await _shop(harness)
            for _ in range(3):
                await _buy(harness, [(mug, 1)])
            relay = harness.container.outbox_relay()
            assert await relay.drain() == 6
            await harness.wait_for(lambda: len(received) == 6, what="messages")
            ids = [message.message_id for message in received]
            assert len(set(ids)) == 6
            assert {m.type for m in received} == {
                "storefront.order.placed.v1",
                "storefront.order.paid.v2",
            }
            await harness.wait_for(lambda: len(everything) == 8, what="all messages")
            assert sum(m.type == "storefront.product.changed.v1" for m in everything) == 2
            for message in everything:  # the products' events too
                assert_cloudevent(message)
            await harness.wait_for(lambda: _report_units(harness, mug) == 3, what="read model")
            for _ in range(2):  # a restarted relay finds nothing left to send
                assert await relay.drain() == 0


SCHEMAS = {
    (loaded := json.loads(path.read_text()))["$id"]: loaded
    for path in (Path(__file__).parents[2] / "app" / "events" / "schemas").glob("*.json")
}
TYPE = re.compile(r"^storefront\.([a-z]+\.[a-z]+)\.v([1-9][0-9]*)$")


def assert_cloudevent(message: aio_pika.abc.AbstractIncomingMessage) -> CloudEvent:
    """The message is a CloudEvent 1.0 (parsed by the SDK from the AMQP message, structured
    mode) with every attribute we promise, and its data validates against the JSON schema its
    `dataschema` names (one of the files shipped in app/events/schemas/)."""
    assert message.content_type == "application/cloudevents+json"
    parsed = rabbitmq.from_rabbitmq(
        rabbitmq.RabbitMQMessage(headers={}, content_type=message.content_type, body=message.body),
        JSONFormat(),
    )
    assert isinstance(parsed, CloudEvent)
    attributes = parsed.get_attributes()
    assert attributes["specversion"] == "1.0"
    assert attributes["id"] == message.message_id
    assert attributes["type"] == message.type
    matched = TYPE.match(attributes["type"])
    assert matched, attributes["type"]
    assert attributes["source"] in ("urn:storefront:orders", "urn:storefront:catalog")
    time = parsed.get_time()
    assert time is not None
    assert time.tzinfo is not None
    assert attributes["datacontenttype"] == "application/json"
    data = parsed.get_data()
    assert isinstance(data, dict)
    subject = data["order_id"] if matched[1].startswith("order.") else data["product_id"]
    assert attributes["subject"] == subject
    uuid.UUID(attributes["tenantid"])
    schema = SCHEMAS[attributes["dataschema"]]  # KeyError: a dataschema we do not ship
    assert schema["title"].startswith(f"{matched[1]} v{matched[2]}:")
    Draft202012Validator(schema, format_checker=FormatChecker()).validate(data)
    return parsed


def _report_units(harness: Harness, product_id: str) -> int:
    value = harness.cluster.psql(
        "primary",
        f"SELECT coalesce(sum(units), 0) FROM sales_daily WHERE product_id = '{product_id}'",
    )
    return int(value.strip())


class RefusesPlacedEvents:
    def __init__(self, real: Any) -> None:
        self.real = real

    async def publish(self, events: list[Event]) -> None:
        if any(event.topic == "order.placed" for event in events):
            raise ConnectionError("broker refused")
        await self.real.publish(events)


async def test_one_failing_event_does_not_hold_back_the_others(harness: Harness) -> None:
    mug, _ = await _shop(harness)
    await _buy(harness, [(mug, 1)])
    with publishing_through(harness, RefusesPlacedEvents) as refusing:
        assert await refusing.drain() == 1  # order.paid went out; order.placed is postponed
    relay = harness.container.outbox_relay()
    assert _outbox(harness) == ["order.placed:f", "order.paid:t"]
    assert await _report(harness) == {(str(TODAY), mug): (1, 1200)}
    assert await relay.drain() == 0  # backing off
    harness.clock.advance(seconds=3)
    assert await relay.drain() == 1
    assert _outbox(harness) == ["order.placed:t", "order.paid:t"]


def _dead_letters(harness: Harness) -> list[tuple[str, int, str]]:
    rows = harness.cluster.psql(
        "primary",
        "SELECT topic || '|' || attempts || '|' || coalesce(last_error, '') FROM outbox"
        " WHERE dead_lettered_at IS NOT NULL ORDER BY seq",
    )
    found = []
    for line in rows.splitlines():
        if line.strip():
            topic, attempts, error = line.strip().split("|", 2)
            found.append((topic, int(attempts), error))
    return found


async def _dead_lettered_metric(harness: Harness, topic: str) -> float:
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    prefix = f'storefront_events_dead_lettered_total{{topic="{topic}"}} '
    line = next((x for x in metrics.text.splitlines() if x.startswith(prefix)), None)
    return float(line.removeprefix(prefix)) if line else 0.0


async def test_an_event_that_would_overflow_the_read_model_is_dead_lettered(
    harness: Harness,
) -> None:
    """The read model's sum would leave bigint: a permanent failure, dead-lettered at once
    (not a 22003 retried forever), counted, and the events after it are still projected."""
    mug, cup = await _shop(harness)
    await _buy(harness, [(mug, 1)])
    relay = harness.container.outbox_relay()
    await relay.drain()
    day = str(TODAY)
    assert await _report(harness) == {(day, mug): (1, 1200)}
    # The day's revenue of the mug is already at the top of bigint (as after many huge orders).
    harness.cluster.psql(
        "primary",
        f"UPDATE sales_daily SET revenue = 9223372036854775000 WHERE product_id = '{mug}'",
    )
    poisoned = await _buy(harness, [(mug, 1)])
    await _buy(harness, [(cup, 2)])
    assert await relay.drain() == 3  # order.placed x2 and the cup's order.paid
    [(topic, attempts, error)] = _dead_letters(harness)
    assert (topic, attempts) == ("order.paid", 1)
    assert "SalesTotalOverflow" in error
    assert await _dead_lettered_metric(harness, "order.paid") == 1
    report = await _report(harness)
    assert report[(day, cup)] == (2, 600)  # the next event was projected
    assert report[(day, mug)] == (1, 9223372036854775000)  # unchanged, not half-applied
    harness.clock.advance(hours=1)
    assert await relay.drain() == 0  # no longer claimed

    # The operator fixes the cause and retries: it is projected once.
    harness.cluster.psql(
        "primary", f"UPDATE sales_daily SET revenue = 1200 WHERE product_id = '{mug}'"
    )
    letters = await relay.dead_letters()
    assert [x.topic for x in letters] == ["order.paid"]
    assert await relay.retry_dead_letters([letters[0].id]) == 1
    assert await relay.drain() == 1
    assert _dead_letters(harness) == []
    assert (await _report(harness))[(day, mug)] == (2, 2400)
    assert poisoned["status"] == "confirmed"


class FlakyConsumer:
    """A second consumer on the in-process bus that fails for `order.paid` with `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    async def handle(self, event: Event) -> None:
        if event.topic == "order.paid":
            self.calls += 1
            raise self.error


async def _relay_with(harness: Harness, consumer: FlakyConsumer, attempts: int) -> OutboxRelay:
    from app.events.bus import InProcessBus
    from app.settings import OutboxSettings

    bus = InProcessBus(harness.container.sales_projector().handle, consumer.handle)
    return OutboxRelay(
        harness.container.uow_factory,
        bus,
        harness.clock,
        OutboxSettings(max_attempts=attempts, max_backoff_seconds=4),
        harness.container.metrics().outbox_result,
        harness.container.metrics().event_dead_lettered,
    )


async def _drain_for(harness: Harness, relay: OutboxRelay, passes: int) -> None:
    for _ in range(passes):
        await relay.drain()
        harness.clock.advance(seconds=5)  # past any backoff


async def test_a_consumer_that_keeps_failing_is_dead_lettered_after_max_attempts(
    harness: Harness,
) -> None:
    mug, _ = await _shop(harness)
    await _buy(harness, [(mug, 1)])
    consumer = FlakyConsumer(RuntimeError("a bug"))
    relay = await _relay_with(harness, consumer, attempts=3)
    await _drain_for(harness, relay, passes=6)
    assert consumer.calls == 3
    [(topic, attempts, error)] = _dead_letters(harness)
    assert (topic, attempts) == ("order.paid", 3)
    assert "a bug" in error
    assert await _dead_lettered_metric(harness, "order.paid") == 1


async def test_an_outage_is_retried_with_backoff_and_never_dead_lettered(
    harness: Harness,
) -> None:
    mug, _ = await _shop(harness)
    await _buy(harness, [(mug, 1)])
    consumer = FlakyConsumer(ConnectionRefusedError("database down"))
    relay = await _relay_with(harness, consumer, attempts=2)
    await relay.drain()
    assert await relay.drain() == 0  # backing off: not retried at once
    await _drain_for(harness, relay, passes=6)
    assert consumer.calls == 6  # 1 + one per pass past its backoff (the first pass is not)
    assert _dead_letters(harness) == []
    assert _outbox(harness) == ["order.placed:t", "order.paid:f"]  # still waiting to go out


async def test_operators_list_and_retry_dead_letters_from_the_cli(harness: Harness) -> None:
    from tests.integration.test_cli import storefront

    mug, _ = await _shop(harness)
    await _buy(harness, [(mug, 1)])
    harness.cluster.psql(
        "primary",
        "UPDATE outbox SET dead_lettered_at = now(), attempts = 5, last_error = 'boom'"
        " WHERE topic = 'order.paid'",
    )
    assert await harness.container.outbox_relay().drain() == 1  # order.placed only
    listed = storefront(harness, "events", "dead-letters", "--json")
    assert listed.returncode == 0, listed.stderr
    [letter] = json.loads(listed.stdout)
    assert (letter["topic"], letter["attempts"], letter["last_error"]) == ("order.paid", 5, "boom")
    refused = storefront(harness, "events", "retry")
    assert refused.returncode == 1
    retried = storefront(harness, "events", "retry", letter["id"])
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith("1 event(s) due again")
    assert await harness.container.outbox_relay().drain() == 1
    assert await _report(harness) == {(str(TODAY), mug): (1, 1200)}


def _insert_v1_sale(harness: Harness, tenant_id: str, product_id: str, quantity: int) -> str:
    """An `order.paid` row as a release before versions wrote it: v1 payload (one currency,
    bare unit amounts) and no version named (the column's default, 1)."""
    event_id = str(uuid.uuid4())
    payload = {
        "order_id": str(uuid.uuid4()),
        "currency": "EUR",
        "at": datetime.now(UTC).isoformat(),
        "lines": [{"product_id": product_id, "quantity": quantity, "unit_amount": 1200}],
    }
    harness.cluster.psql(
        "primary",
        "INSERT INTO outbox (id, tenant_id, topic, payload)"
        f" VALUES ('{event_id}', '{tenant_id}', 'order.paid', '{json.dumps(payload)}')",
    )
    return event_id


def _tenant_id(harness: Harness, slug: str = "acme") -> str:
    return harness.cluster.psql("primary", f"SELECT id FROM tenants WHERE slug = '{slug}'").strip()


async def test_a_v1_event_in_the_outbox_is_consumed_through_its_upcaster(harness: Harness) -> None:
    mug, _ = await _shop(harness)
    _insert_v1_sale(harness, _tenant_id(harness), mug, 3)
    versions = "SELECT version FROM outbox WHERE topic = 'order.paid'"
    assert harness.cluster.psql("primary", versions).split() == ["1"]
    assert await harness.container.outbox_relay().drain() == 1
    assert _dead_letters(harness) == []
    assert await _report(harness) == {(str(TODAY), mug): (3, 3600)}
    await _buy(harness, [(mug, 1)])  # a v2 one beside it
    assert await harness.container.outbox_relay().drain() == 2
    assert await _report(harness) == {(str(TODAY), mug): (4, 4800)}


async def test_v1_messages_from_the_broker_are_upcast_by_the_consumer(
    make_harness: Any, rabbit_url: str
) -> None:
    """A v1 row still in the outbox goes out as a `...order.paid.v1` CloudEvent (valid against
    the v1 schema), and a message in the envelope of the release before CloudEvents (still
    queued during a rolling deploy) is read as v1 too: both are projected as v2 ones are."""
    harness, broker = await _on_rabbit(make_harness, rabbit_url)
    async with rabbit_spy(rabbit_url, broker["exchange"], "order.*") as received:
        consumer = _projecting(harness, rabbit_url, broker)
        async with consumer:
            mug, _ = await _shop(harness)
            tenant = _tenant_id(harness)
            event_id = _insert_v1_sale(harness, tenant, mug, 2)
            assert await harness.container.outbox_relay().drain() == 1
            await harness.wait_for(lambda: len(received) == 1, what="the v1 message")
            assert received[0].type == "storefront.order.paid.v1"
            assert assert_cloudevent(received[0]).get_id() == event_id
            await harness.wait_for(lambda: _report_units(harness, mug) == 2, what="read model")

            legacy = {
                "id": str(uuid.uuid4()),
                "tenant_id": tenant,
                "topic": "order.paid",
                "payload": {
                    "order_id": str(uuid.uuid4()),
                    "currency": "EUR",
                    "at": datetime.now(UTC).isoformat(),
                    "lines": [{"product_id": mug, "quantity": 5, "unit_amount": 1200}],
                },
                "created_at": datetime.now(UTC).isoformat(),
            }
            connection = await aio_pika.connect_robust(rabbit_url)
            async with connection:
                channel = await connection.channel()
                exchange = await channel.get_exchange(broker["exchange"])
                await exchange.publish(
                    aio_pika.Message(
                        json.dumps(legacy).encode(),
                        message_id=legacy["id"],
                        type="order.paid",
                        content_type="application/json",
                    ),
                    routing_key="order.paid",
                )
            await harness.wait_for(lambda: _report_units(harness, mug) == 7, what="legacy message")
    assert await _report(harness) == {(str(TODAY), mug): (7, 8400)}
