"""Live order status over WebSocket (issue 13): the protocol against real served processes
(uvicorn, real sockets), with httpx-ws as the client; the test's own app (harness) sets data up
and moves orders on the same database."""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import wsproto
import wsproto.events
from httpx_ws import AsyncWebSocketSession, WebSocketDisconnect, WebSocketUpgradeError, aconnect_ws

from app.core.money import Money
from tests.conftest import OPERATOR_TOKEN, Harness
from tests.served_app import ServedApp

ORIGIN = "https://shop.example"
SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write")


@dataclass
class Shop:
    harness: Harness
    tenant_id: uuid.UUID
    key: str
    product_id: uuid.UUID

    async def place(self) -> uuid.UUID:
        outcome = await self.harness.container.order_service().place(
            self.tenant_id, str(uuid.uuid4()), uuid.uuid4().bytes, [(self.product_id, 1)], "tok_ok"
        )
        assert outcome.order is not None
        return outcome.order.id

    async def cancel(self, order_id: uuid.UUID) -> None:
        await self.harness.container.order_service().cancel(self.tenant_id, order_id)


async def open_shop(harness: Harness, slug: str) -> Shop:
    tenant, key = await harness.tenant_with_key(slug, scopes=SCOPES)
    product = await harness.container.catalog_service().create(
        tenant.id, "SKU-1", "Thing", None, Money(100, "EUR"), 100_000
    )
    return Shop(harness, tenant.id, key, product.id)


@pytest.fixture
async def shop(harness: Harness) -> Shop:
    return await open_shop(harness, "acme")


def serve(served_apps: Callable[..., ServedApp], **settings: Any) -> ServedApp:
    env = {"STOREFRONT_WEBSOCKET__ALLOWED_ORIGINS": json.dumps([ORIGIN])}
    env.update({f"STOREFRONT_WEBSOCKET__{k.upper()}": str(v) for k, v in settings.items()})
    return served_apps(env=env)


@asynccontextmanager
async def watch(
    app: ServedApp, path: str, headers: dict[str, str] | None = None, **kwargs: Any
) -> AsyncIterator[AsyncWebSocketSession]:
    async with (
        httpx.AsyncClient(base_url=app.url.replace("http", "ws"), timeout=10) as client,
        aconnect_ws(path, client, headers=dict(headers or {}), **kwargs) as session,
    ):
        yield session


async def statuses(session: AsyncWebSocketSession, count: int) -> list[dict[str, Any]]:
    """The next `count` status messages (heartbeats skipped)."""
    got: list[dict[str, Any]] = []
    while len(got) < count:
        message = await session.receive_json(timeout=10)
        if message["type"] == "order.status":
            got.append(message)
    return got


async def drain(session: AsyncWebSocketSession) -> None:
    """Read until the server closes (WebSocketDisconnect)."""
    while True:
        await session.receive_json(timeout=10)


async def ticket(app: ServedApp, key: str) -> str:
    async with httpx.AsyncClient(base_url=app.url) as client:
        response = await client.post("/v1/ws-tickets", headers={"X-API-Key": key})
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    value: str = response.json()["ticket"]
    return value


async def refused(
    app: ServedApp,
    path: str | Callable[[], Awaitable[str]],
    headers: dict[str, str] | None = None,
) -> Any:
    """(status, problem code) of an upgrade that must not happen: httpx-ws sees the HTTP
    status instead of a 101; the problem+json body is read with a plain upgrade request.
    `path` may be made anew for each of the two (a ticket works once)."""

    async def make() -> str:
        return path if isinstance(path, str) else await path()

    with pytest.raises(WebSocketUpgradeError) as caught:
        async with watch(app, await make(), headers):
            pass
    status = caught.value.response.status_code
    upgrade = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    }
    async with httpx.AsyncClient(base_url=app.url) as client:
        response = await client.get(await make(), headers={**upgrade, **(headers or {})})
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status
    return status, body["code"]


async def test_refused_before_upgrade_without_credentials_or_with_a_bad_ticket(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps)
    assert await refused(app, "/v1/orders/events") == (401, "auth.unauthenticated")
    assert await refused(app, "/v1/orders/events?ticket=wst_nope") == (401, "auth.ticket_invalid")
    forged = f"wst_{shop.tenant_id.hex}_{'A' * 43}"
    assert await refused(app, f"/v1/orders/events?ticket={forged}") == (
        401,
        "auth.ticket_invalid",
    )
    wrong_key = {"X-API-Key": "sf_live_wrong"}
    assert (await refused(app, "/v1/orders/events", wrong_key))[0] == 401


async def test_a_ticket_works_once(shop: Shop, served_apps: Callable[..., ServedApp]) -> None:
    app = serve(served_apps)
    order_id = await shop.place()
    single = await ticket(app, shop.key)
    async with watch(app, f"/v1/orders/{order_id}/events?ticket={single}") as session:
        assert [m["status"] for m in await statuses(session, 2)] == ["pending", "confirmed"]
    again = await refused(app, f"/v1/orders/{order_id}/events?ticket={single}")
    assert again == (401, "auth.ticket_invalid")


async def test_an_expired_ticket_is_refused(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps, ticket_ttl_seconds=30)
    stale = await ticket(app, shop.key)
    app.move_clock(31)
    with pytest.raises(WebSocketUpgradeError) as caught:
        async with watch(app, f"/v1/orders/events?ticket={stale}"):
            pass
    assert caught.value.response.status_code == 401
    # The same, for a fresh ticket (its problem body read too), once past its 30 s.

    async def expired() -> str:
        fresh = await ticket(app, shop.key)
        app.move_clock(31)
        return f"/v1/orders/events?ticket={fresh}"

    assert await refused(app, expired) == (401, "auth.ticket_invalid")


async def test_another_tenants_order_is_not_found_and_its_events_never_arrive(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps)
    other = await open_shop(shop.harness, "globex")
    theirs = await other.place()

    async def with_our_ticket() -> str:
        return f"/v1/orders/{theirs}/events?ticket={await ticket(app, shop.key)}"

    assert await refused(app, with_our_ticket) == (404, "orders.not_found")
    # Their order through our API key: the same 404.
    assert await refused(app, f"/v1/orders/{theirs}/events", {"X-API-Key": shop.key}) == (
        404,
        "orders.not_found",
    )
    async with watch(app, "/v1/orders/events", {"X-API-Key": shop.key}) as session:
        await other.cancel(theirs)  # globex's event: acme's socket must not see it
        mine = await shop.place()
        got = await statuses(session, 2)
    assert {m["order_id"] for m in got} == {str(mine)}


async def test_an_origin_not_allowed_is_refused(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps)
    evil = {"X-API-Key": shop.key, "Origin": "https://evil.example"}
    assert await refused(app, "/v1/orders/events", evil) == (403, "websocket.origin_not_allowed")
    async with watch(app, "/v1/orders/events", {"X-API-Key": shop.key, "Origin": ORIGIN}):
        pass


async def test_an_order_placed_and_cancelled_arrives_in_order(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps)
    async with watch(app, "/v1/orders/events", {"X-API-Key": shop.key}) as tenant_wide:
        order_id = await shop.place()
        async with watch(app, f"/v1/orders/{order_id}/events", {"X-API-Key": shop.key}) as one:
            await shop.cancel(order_id)
            for session in (tenant_wide, one):
                got = await statuses(session, 3)
                assert [(m["seq"], m["status"]) for m in got] == [
                    (1, "pending"),
                    (2, "confirmed"),
                    (3, "cancelled"),
                ]
                assert {m["order_id"] for m in got} == {str(order_id)}
                positions = [m["position"] for m in got]
                assert positions == sorted(positions)


async def test_a_reconnect_with_the_last_sequence_has_no_gap_and_no_duplicate(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    """Orders keep moving while the client comes and goes: per order, the sequences it sees
    over all its connections are exactly 1..n, each once."""
    app = serve(served_apps)
    orders = [await shop.place() for _ in range(5)]
    seen: dict[uuid.UUID, list[int]] = {order: [] for order in orders}

    async def producer() -> None:
        for order in orders:
            await shop.cancel(order)
            await asyncio.sleep(0.05)

    async def follow(order: uuid.UUID) -> None:
        while not seen[order] or seen[order][-1] < 3:
            after = seen[order][-1] if seen[order] else 0
            path = f"/v1/orders/{order}/events?after={after}"
            async with watch(app, path, {"X-API-Key": shop.key}) as session:
                message = (await statuses(session, 1))[0]  # one message per connection
                seen[order].append(message["seq"])

    await asyncio.gather(producer(), *(follow(order) for order in orders))
    assert all(seqs == [1, 2, 3] for seqs in seen.values()), seen

    # The tenant-wide stream resumes by position.
    async with watch(app, "/v1/orders/events?after=0", {"X-API-Key": shop.key}) as session:
        first = await statuses(session, 7)
    async with watch(
        app, f"/v1/orders/events?after={first[-1]['position']}", {"X-API-Key": shop.key}
    ) as session:
        rest = await statuses(session, 8)
    keys = [(m["order_id"], m["seq"]) for m in first + rest]
    assert len(keys) == len(set(keys)) == 15


async def test_events_produced_in_one_process_reach_a_client_of_another(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    producer, consumer = serve(served_apps), serve(served_apps)
    async with watch(consumer, "/v1/orders/events", {"X-API-Key": shop.key}) as session:
        async with httpx.AsyncClient(base_url=producer.url) as client:
            placed = await client.post(
                "/v1/orders",
                json={
                    "items": [{"product_id": str(shop.product_id), "quantity": 1}],
                    "payment": {"token": "tok_ok"},
                },
                headers={"X-API-Key": shop.key, "Idempotency-Key": "two-processes"},
            )
            assert placed.status_code == 201, placed.text
            order_id = placed.json()["id"]
            cancelled = await client.post(
                f"/v1/orders/{order_id}/cancel", headers={"X-API-Key": shop.key}
            )
            assert cancelled.status_code == 200, cancelled.text
        got = await statuses(session, 3)
    assert [(m["order_id"], m["status"]) for m in got] == [
        (order_id, "pending"),
        (order_id, "confirmed"),
        (order_id, "cancelled"),
    ]


async def test_heartbeats_and_a_graceful_close_on_shutdown(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps, heartbeat_seconds=0.2)
    async with watch(app, "/v1/orders/events", {"X-API-Key": shop.key}) as session:
        assert (await session.receive_json(timeout=5))["type"] == "heartbeat"
        await asyncio.to_thread(app.stop)  # SIGTERM
        with pytest.raises(WebSocketDisconnect) as closed:
            await drain(session)
    assert closed.value.code == 1001


class RawClient:
    """A WebSocket client on a plain socket with a small receive buffer, that reads only when
    told to: a browser tab frozen in the background."""

    def __init__(self, app: ServedApp, path: str, key: str) -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self._sock.connect(("127.0.0.1", app.port))
        self._ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        request = wsproto.events.Request(
            host=f"127.0.0.1:{app.port}", target=path, extra_headers=[(b"x-api-key", key.encode())]
        )
        self._sock.sendall(self._ws.send(request))
        self._sock.settimeout(5)
        accepted = False
        while not accepted:
            self._ws.receive_data(self._sock.recv(4096))
            accepted = any(
                isinstance(e, wsproto.events.AcceptConnection) for e in self._ws.events()
            )

    def read_to_close(self) -> tuple[int, int]:
        """Read everything: (messages received, close code)."""
        messages = 0
        while True:
            try:
                data = self._sock.recv(65536)
            except TimeoutError:
                return messages, -2
            if not data:
                return messages, -1
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, wsproto.events.TextMessage) and event.message_finished:
                    messages += 1
                elif isinstance(event, wsproto.events.CloseConnection):
                    return messages, event.code

    def close(self) -> None:
        self._sock.close()


async def test_a_client_that_stops_reading_is_dropped_and_others_are_not(
    shop: Shop, served_apps: Callable[..., ServedApp]
) -> None:
    app = serve(served_apps, queue_size=1000, send_timeout_seconds=1.0)
    order_id = await shop.place()
    rounds, per_round = 100, 60  # 6,000 status changes of one order, 60 per transaction
    path = f"/v1/orders/{order_id}/events?after=2"
    frozen = await asyncio.to_thread(RawClient, app, path, shop.key)
    try:
        async with watch(app, path, {"X-API-Key": shop.key}, queue_size=10_000) as reader:

            async def produce() -> None:
                for _ in range(rounds):
                    shop.harness.cluster.psql(
                        "primary",
                        "DO $$ BEGIN FOR i IN 1.." + str(per_round) + " LOOP"
                        " UPDATE orders SET status = CASE status WHEN 'confirmed' THEN"
                        " 'cancelled' ELSE 'confirmed' END WHERE id = '" + str(order_id) + "';"
                        " END LOOP; END $$",
                    )
                    await asyncio.sleep(0.01)

            producing = asyncio.create_task(produce())
            got = await statuses(reader, rounds * per_round)
            await producing
        assert [m["seq"] for m in got] == list(range(3, 3 + rounds * per_round))
        received, code = await asyncio.to_thread(frozen.read_to_close)
    finally:
        frozen.close()
    assert code == 1013, (received, code)
    assert received < rounds * per_round / 2  # the server did not keep the rest for it
    async with httpx.AsyncClient(base_url=app.url) as client:
        metrics = await client.get(
            "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
    dropped = [
        line
        for line in metrics.text.splitlines()
        if line.startswith("storefront_ws_dropped_total{") and not line.endswith(" 0.0")
    ]
    assert dropped, metrics.text
