"""Test harness: one real PostgreSQL primary + streaming replica per test session.

The pair is created from the machine's PostgreSQL binaries in a temp dir on free ports, migrated
by running the Alembic migrations (never create_all), and truncated before every test.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest
from alembic.config import Config
from dependency_injector import providers

from alembic import command

os.environ["STOREFRONT_ENV"] = "test"

from app.devcluster import ClusterError, LocalCluster
from app.main import create_app
from app.ops.service import ALEMBIC_INI
from app.settings import Settings
from containers import Container
from tests.served_app import (
    OPERATOR_TOKEN,
    free_port,
    served_apps,  # noqa: F401  (fixture: real app processes)
)


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    base = tempfile.mkdtemp(prefix="storefront-test-")
    local = LocalCluster(os.path.join(base, "pg"))
    local.up()
    try:
        config = Config(str(ALEMBIC_INI))
        config.attributes["url"] = local.dsn("primary")
        config.attributes["app_role"] = "storefront_app"
        command.upgrade(config, "head")
        yield local
    finally:
        local.destroy()
        shutil.rmtree(base, ignore_errors=True)


def poll(ready: Callable[[], bool], within: float, interval: float = 0.1) -> bool:
    """Call `ready` until it is true or `within` seconds have passed; its last answer."""
    deadline = time.monotonic() + within
    while not ready():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


class RedisServer:
    """A Redis server of the test's own, on a free port (the machine's binary)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server not found: install Redis (apt-get install redis-server)"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = tempfile.mkdtemp(prefix="storefront-redis-")
        self._process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""],
            cwd=self._workdir,
            stdout=subprocess.DEVNULL,
        )
        if not poll(self._pong, within=10) or self._process.poll() is not None:
            self.stop()
            raise RuntimeError(f"redis-server did not start on port {self.port}")

    def _pong(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return self._process.poll() is not None  # exited: stop waiting, fail in __init__

    def kill(self) -> None:
        """Gone at once, as in a crash: connections reset, the port refuses."""
        self._process.kill()
        self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        shutil.rmtree(self._workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """The session's Redis (tests that kill a server start their own `RedisServer`)."""
    server = RedisServer()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    """The machine's RabbitMQ (started if it is not running); tests use their own exchange and
    queue names, so they do not see anything else on it."""
    url = os.environ.get("STOREFRONT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")

    def reachable() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", 5672), timeout=0.5):
                return True
        except OSError:
            return False

    if not reachable() and shutil.which("rabbitmq-server"):
        subprocess.run(["rabbitmq-server", "-detached"], check=False, capture_output=True)
        poll(reachable, within=60, interval=0.5)
    if not reachable():
        raise RuntimeError("RabbitMQ is not reachable on 127.0.0.1:5672 and could not start")
    return url


@asynccontextmanager
async def rabbit_spy(
    url: str, exchange: str, routing_key: str = "#"
) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """The messages published on the topic `exchange` that match `routing_key`, appended as
    they arrive (an exclusive queue of the test's own, deleted with the connection)."""
    received: list[aio_pika.abc.AbstractIncomingMessage] = []
    connection = await aio_pika.connect_robust(url)
    try:
        channel = await connection.channel()
        topic = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        spy = await channel.declare_queue(exclusive=True)
        await spy.bind(topic, routing_key=routing_key)

        async def spy_on(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.append(message)

        await spy.consume(spy_on, no_ack=True)
        yield received
    finally:
        await connection.close()


def app_url(cluster: LocalCluster, role: str) -> str:
    return cluster.dsn(role, user="storefront_app").replace(
        "postgresql://", "postgresql+asyncpg://"
    )


def make_settings(cluster: LocalCluster, **overrides: Any) -> Settings:
    """Test settings: the cluster's URLs plus overrides. A keyword naming a top-level section
    (`auth={...}`, `payments={...}`) overrides that section; any other keyword is a key of the
    `database` section (`pool={...}`, `routing={...}`)."""
    sections = {k: v for k, v in overrides.items() if k in Settings.model_fields}
    database = {k: v for k, v in overrides.items() if k not in sections}
    section: dict[str, Any] = {
        "primary": {"url": app_url(cluster, "primary")},
        "replicas": [{"url": app_url(cluster, "replica"), "weight": 1}],
        "migration_url": cluster.dsn("primary"),
        "connect": {"connect_timeout": 1.0, "command_timeout": 5.0, "ssl": "disable"},
        "routing": {"health_interval_seconds": 0.2, "max_replica_lag_seconds": 5.0},
        "breaker": {"fail_max": 2, "reset_timeout_seconds": 1.0},
    }
    for key, value in database.items():
        if isinstance(value, dict) and isinstance(section.get(key), dict):
            section[key] = {**section[key], **value}
        else:
            section[key] = value
    return Settings(**{"ops": {"operator_token": OPERATOR_TOKEN}, **sections, "database": section})


async def at_window_start(window_seconds: float) -> None:
    """Sleep until just after a window edge of the rate limiter's memory storage. `limits`'
    sliding-window counter weighs fixed windows; in memory they are aligned to multiples of
    their length in Unix time (in Redis a key's window starts with its first hit). A test that
    must fill one quickly (a lockout: 5 failures) starts here, so they all land in one window
    and none is discounted by the previous window's weight."""
    await asyncio.sleep(window_seconds - time.time() % window_seconds + 0.02)


@pytest.fixture(autouse=True)
def clean_database(request: pytest.FixtureRequest) -> None:
    """Every test starts from empty tables (unit tests do not touch the cluster)."""
    if "cluster" not in request.fixturenames:
        return
    local: LocalCluster = request.getfixturevalue("cluster")
    # Between tests no event loop runs: a background task of a longer-lived app (a module's
    # harness reloading a tenant's policy after a NOTIFY) can be frozen mid-transaction until
    # its loop runs again, holding locks the TRUNCATE needs. Apps' sessions still in a
    # transaction are ended first, as a server restart would end them (their pools replace
    # them); a lock conflict with another process's background work is retried once.
    statement = (
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE xact_start IS NOT NULL AND application_name LIKE 'storefront:%';"
        " SET lock_timeout = '10s';"
        " TRUNCATE tenants, revocations, feature_flags, api_version_usage CASCADE"
    )
    for attempt in (1, 2):
        try:
            local.psql("primary", statement)
            return
        except ClusterError as error:  # a session a test left in a transaction: name it
            if attempt == 1:
                continue
            holders = local.psql(
                "primary",
                "SELECT pid, application_name, state, now() - xact_start, left(query, 200)"
                " FROM pg_stat_activity WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid()",
            )
            raise ClusterError(f"{error}\nsessions in a transaction:\n{holders}") from None


class MovableClock:
    """System time plus an offset the test moves: overriding the container's `clock` with it
    before the app is built means no singleton needs a reset when time moves."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, **delta: float) -> None:
        self.offset += timedelta(**delta)


class StorefrontClient(httpx.AsyncClient):
    """Like a real SDK: sends back the last consistency token it was given (read-your-writes)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.consistency_token: str | None = None

    async def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:  # type: ignore[override]
        if self.consistency_token and "x-consistency-token" not in request.headers:
            request.headers["X-Consistency-Token"] = self.consistency_token
        response = await super().send(request, **kwargs)
        token = response.headers.get("x-consistency-token")
        if token:
            self.consistency_token = token
        return response


class Harness:
    """An app built around a container the test may override, plus helpers."""

    def __init__(
        self, cluster: LocalCluster, container: Container, app: Any, clock: MovableClock
    ) -> None:
        self.cluster = cluster
        self.clock = clock
        self.lifespan: Any = None
        self.container = container
        self.app = app
        self.client = StorefrontClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver"
        )

    async def tenant_with_key(
        self, slug: str = "acme", scopes: tuple[str, ...] = ("catalog:read", "catalog:write")
    ) -> tuple[Any, str]:
        tenant = await self.container.tenant_service().create(slug, slug.title())
        _, secret = await self.container.api_key_service().issue(tenant.id, "test", list(scopes))
        return tenant, secret

    async def ops_db(self) -> dict[str, Any]:
        response = await self.client.get(
            "/ops/db", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
        )
        assert response.status_code == 200, response.text
        engines: dict[str, Any] = {e["name"]: e for e in response.json()["engines"]}
        return engines

    async def product_on_replica(self, body: dict[str, Any]) -> str:
        """Create a product and wait until the replica has replayed it; plain reads follow, so
        the client stops sending the write's consistency token."""
        created = await self.client.post("/v1/products", json=body)
        assert created.status_code == 201, created.text
        product_id: str = created.json()["id"]
        self.client.consistency_token = None
        await self.wait_for(lambda: self.database_read_on_replica(product_id), what="replay")
        return product_id

    async def database_read_on_replica(self, product_id: str) -> Any:
        """What the replica itself returns for a product (bypassing the app)."""
        conn = await raw_connect(self.cluster, "replica", "storefront")
        try:
            return await conn.fetchrow("SELECT id FROM products WHERE id = $1::uuid", product_id)
        finally:
            await conn.close()

    async def wait_for(
        self, condition: Callable[[], Any], within: float = 10.0, what: str = "condition"
    ) -> None:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            result = condition()
            if asyncio.iscoroutine(result):
                result = await result
            if result:
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


async def open_harness(cluster: LocalCluster, **overrides: Any) -> Harness:
    """An app around a fresh container with test settings (see make_settings) and a movable
    clock, started."""
    container = Container()
    settings = make_settings(cluster, **overrides)
    container.settings.override(providers.Object(settings))
    clock = MovableClock()
    container.clock.override(providers.Object(clock))
    app = create_app(container)
    harness = Harness(cluster, container, app, clock)
    harness.lifespan = app.router.lifespan_context(app)
    await harness.lifespan.__aenter__()
    return harness


async def close_harness(harness: Harness) -> None:
    await harness.client.aclose()
    await harness.lifespan.__aexit__(None, None, None)
    harness.container.unwire()
    harness.container.reset_override()


@pytest.fixture
async def make_harness(cluster: LocalCluster) -> AsyncIterator[Callable[..., Any]]:
    """Build (and on teardown close) apps; arguments override settings sections."""
    opened: list[Harness] = []

    async def build(**overrides: Any) -> Harness:
        harness = await open_harness(cluster, **overrides)
        opened.append(harness)
        return harness

    yield build
    for harness in reversed(opened):
        await close_harness(harness)


@pytest.fixture
async def harness(make_harness: Callable[..., Any]) -> Harness:
    built: Harness = await make_harness()
    return built


@pytest.fixture
async def acme(harness: Harness) -> dict[str, Any]:
    """Tenant `acme` with a catalog key; the harness client sends that key."""
    tenant, secret = await harness.tenant_with_key("acme")
    harness.client.headers["X-API-Key"] = secret
    return {"tenant": tenant, "key": secret}


@pytest.fixture
async def acme_orders(harness: Harness) -> dict[str, Any]:
    """Tenant `acme` with a key for the catalog and orders; the harness client sends it."""
    scopes = ("catalog:read", "catalog:write", "orders:read", "orders:write", "reports:read")
    tenant, secret = await harness.tenant_with_key("acme", scopes=scopes)
    harness.client.headers["X-API-Key"] = secret
    return {"tenant": tenant, "key": secret}


async def raw_connect(cluster: LocalCluster, role: str, user: str) -> asyncpg.Connection:
    return await asyncpg.connect(cluster.dsn(role, user=user))


@asynccontextmanager
async def replay_paused(cluster: LocalCluster) -> AsyncIterator[None]:
    """The replica receives WAL but applies none of it until the block ends."""
    replica = await raw_connect(cluster, "replica", "postgres")
    try:
        await replica.execute("SELECT pg_wal_replay_pause()")
        yield
    finally:
        await replica.execute("SELECT pg_wal_replay_resume()")
        await replica.close()


def problem(response: httpx.Response) -> dict[str, Any]:
    """Assert the RFC 9457 shape and return the body."""
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = json.loads(response.text)
    for field in ("type", "title", "status", "detail", "instance", "code", "request_id"):
        assert field in body, f"{field} missing in {body}"
    assert body["status"] == response.status_code
    assert body["request_id"] == response.headers["x-request-id"]
    return body
