"""Prometheus metrics, one registry per process (API, worker), rendered by `render()`.

In-memory figures (pools, breakers, the door) are read at scrape time at no per-request cost;
the outbox backlog is one bounded query per scrape (`watch_outbox`). Business metrics (orders,
payments, replays) arrive through the ports the services are given (`OrderObserver`,
`PaymentObserver`): the container passes this object.
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import os
import platform
import subprocess
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from app.db.breakers import STATE_CODES
from app.db.database import Database
from app.events.repository import Backlog

log = structlog.get_logger(__name__)
# Every counter and histogram would also export a `_created` series per label set: noise that
# doubles the series count and that no alert or dashboard reads.
disable_created_metrics()  # type: ignore[no-untyped-call]
SCRAPE_QUERY_TIMEOUT_SECONDS = 1.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)  # process_cpu_seconds_total, _resident_memory..
        PlatformCollector(registry=self.registry)  # python_info
        GCCollector(registry=self.registry)  # python_gc_*
        self.build_info = Gauge(
            "storefront_build_info",
            "Always 1: the running code's version, Python version, git commit (or unknown) and"
            " process kind (api, worker).",
            ["version", "python", "commit", "process"],
            registry=self.registry,
        )
        self.orders = Counter(
            "storefront_orders",
            "Order outcomes: placed, rejected (reason = the problem code), cancelled, recovered"
            " (settled by the worker after a crash); idempotent replays are not counted here.",
            ["outcome", "reason"],
            registry=self.registry,
        )
        self.deprecated_requests = Counter(
            "storefront_api_deprecated_requests",
            "Requests served a deprecated API version, per version and tenant (whom to contact"
            " before its sunset); tenant is empty before authentication.",
            ["version", "tenant"],
            registry=self.registry,
        )
        self.idempotent_replays = Counter(
            "storefront_idempotent_replays",
            "Requests answered from a stored idempotency key (Idempotent-Replayed: true).",
            registry=self.registry,
        )
        self.payment_duration = Histogram(
            "storefront_payment_request_duration_seconds",
            "Payment provider calls by operation (authorize, void, ...) and result (ok, declined,"
            " rejected, failed); calls refused by an open breaker are not made and not counted.",
            ["operation", "result"],
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "storefront_http_request_duration_seconds",
            "HTTP request duration by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.checkout_duration = Histogram(
            "storefront_db_pool_checkout_seconds",
            "Time to check a connection out of an engine's pool (wait included).",
            ["engine"],
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.auth_events = Counter(
            "storefront_auth_events_total",
            "Security-relevant authentication events: login_failed, login_locked, refresh_reused.",
            ["event"],
            registry=self.registry,
        )
        for event in ("login_failed", "login_locked", "refresh_reused"):
            self.auth_events.labels(event)  # exported at 0: the first event is an increase

        self.outbox_events = Counter(
            "storefront_outbox_events_total",
            "Outbox events handed to the publisher, by result: published, failed (retried).",
            ["result"],
            registry=self.registry,
        )

        self.invalidation_listening = Gauge(
            "storefront_invalidation_listening",
            "1 while this process's LISTEN connection of the invalidation channel is up; 0: it"
            " learns of revocations only by the periodic re-read.",
            registry=self.registry,
        )

        self.events_dead_lettered = Counter(
            "storefront_events_dead_lettered",
            "In-process bus: events set aside because a consumer failed permanently (or kept"
            " failing), by topic; see `storefront events dead-letters`.",
            ["topic"],
            registry=self.registry,
        )
        self.ws_connections = Gauge(
            "storefront_ws_connections",
            "Open live order status WebSockets of this process.",
            registry=self.registry,
        )
        self.ws_dropped = Counter(
            "storefront_ws_dropped_total",
            "Live status sockets closed with 1013 because the client did not keep up, by"
            " reason: queue_full (its buffer overflowed), send_timeout (a message not taken in"
            " websocket.send_timeout_seconds).",
            ["reason"],
            registry=self.registry,
        )
        for reason in ("queue_full", "send_timeout"):
            self.ws_dropped.labels(reason)
        self.ws_listening = Gauge(
            "storefront_ws_listening",
            "1 while this process's LISTEN connection for live order status is up.",
            registry=self.registry,
        )
        self.rate_limit_fail_opens = Counter(
            "storefront_rate_limit_fail_open_total",
            "Requests admitted unchecked because the rate-limit store (Redis) did not answer.",
            registry=self.registry,
        )
        self._http_children: dict[tuple[str, str, int], Any] = {}
        self._checkout_children: dict[str, Any] = {}
        self._refreshed: list[OutboxCollector] = []

    def announce(self, process: str) -> None:
        """The build-info series of this process (`api` or `worker`)."""
        self.build_info.labels(*build_labels(), process).set(1)

    async def render(self) -> bytes:
        """The exposition text: scrape-time queries first (bounded, failures leave their
        series out), then every collector."""
        for collector in self._refreshed:
            await collector.refresh()
        return generate_latest(self.registry)

    # -- ports of the services (OrderObserver, PaymentObserver) --------------------------------

    def order_outcome(self, outcome: str, reason: str = "") -> None:
        self.orders.labels(outcome, reason).inc()

    def deprecated_request(self, version: str, tenant_id: uuid.UUID | None) -> None:
        self.deprecated_requests.labels(version, str(tenant_id) if tenant_id else "").inc()

    def idempotent_replay(self) -> None:
        self.idempotent_replays.inc()

    def payment_call(self, operation: str, result: str, seconds: float) -> None:
        self.payment_duration.labels(operation, result).observe(seconds)

    def watch_outbox(self, backlog: Callable[[], Awaitable[Backlog]]) -> None:
        collector = OutboxCollector(backlog)
        self.registry.register(collector)
        self._refreshed.append(collector)

    def invalidation_state(self, listening: bool) -> None:
        self.invalidation_listening.set(1 if listening else 0)

    def live_socket(self, delta: int) -> None:
        self.ws_connections.inc(delta)

    def live_dropped(self, reason: str) -> None:
        self.ws_dropped.labels(reason).inc()

    def live_listening(self, listening: bool) -> None:
        self.ws_listening.set(1 if listening else 0)

    def rate_limit_fail_open(self) -> None:
        self.rate_limit_fail_opens.inc()

    def outbox_result(self, result: str, count: int) -> None:
        self.outbox_events.labels(result).inc(count)

    def event_dead_lettered(self, topic: str) -> None:
        self.events_dead_lettered.labels(topic).inc()

    def watch_payments(self, gateway: Any) -> None:
        self.registry.register(PaymentCollector(gateway))

    def auth_event(self, event: str) -> None:
        self.auth_events.labels(event).inc()

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        # labels() takes a lock and builds a key on every call; the children are few and stable.
        key = (method, route, status)
        child = self._http_children.get(key)
        if child is None:
            child = self._http_children[key] = self.http_duration.labels(method, route, status)
        child.observe(seconds)

    def observe_checkout(self, engine: str, seconds: float) -> None:
        child = self._checkout_children.get(engine)  # as observe_http: one per engine
        if child is None:
            child = self._checkout_children[engine] = self.checkout_duration.labels(engine)
        child.observe(seconds)

    def watch_door(self, door: Any) -> None:
        self.registry.register(DoorCollector(door))

    def watch_tenant_gate(self, gate: Any, top_tenants: int) -> None:
        self.registry.register(TenantGateCollector(gate, top_tenants))

    def watch(self, database: Database) -> None:
        for node in database.nodes:
            node.checkout_observer = self.observe_checkout
        self.registry.register(DatabaseCollector(database))


def watch_sources(
    metrics: Metrics,
    process: str,
    database: Database,
    gate: Any,
    top_tenants: int,
    gateway: Any,
    backlog: Callable[[], Awaitable[Backlog]],
) -> Metrics:
    """What every long-running process exports besides its own counters (the container's
    `process_metrics`, called once at start-up by the API's lifespan and by the worker)."""
    metrics.announce(process)
    metrics.watch(database)
    metrics.watch_tenant_gate(gate, top_tenants)
    metrics.watch_payments(gateway)
    metrics.watch_outbox(backlog)
    return metrics


class PaymentCollector(Collector):
    """The payment breakers (per process): the provider-wide one, and how many provider-account
    (tenant) breakers are in each state (three series, however many tenants)."""

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "storefront_payment_breaker_state",
            "Provider-wide breaker: 0 closed, 1 half-open, 2 open.",
            STATE_CODES.get(self.gateway.breaker_state, 2),
        )
        breakers = getattr(self.gateway, "breakers", None)
        if breakers is None:  # a test double
            return
        accounts = GaugeMetricFamily(
            "storefront_payment_account_breakers",
            "Provider-account (tenant) breakers kept in this process, by state.",
            labels=["state"],
        )
        for state, count in breakers.account_states().items():
            accounts.add_metric([state.replace("-", "_")], count)
        yield accounts


class DoorCollector(Collector):
    """The edge's concurrency door (see app.http.middleware.Door)."""

    def __init__(self, door: Any) -> None:
        self.door = door

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        yield GaugeMetricFamily(
            "storefront_http_requests_in_progress", "Requests inside the door.", self.door.inside
        )
        yield GaugeMetricFamily(
            "storefront_http_requests_waiting", "Requests waiting at the door.", self.door.waiting
        )
        yield CounterMetricFamily(
            "storefront_http_requests_turned_away",
            "503 server.busy: waited longer than server.queue_timeout_seconds.",
            self.door.turned_away,
        )


class TenantGateCollector(Collector):
    """Per-tenant database connections (app/db/fairness.py), with bounded label cardinality:
    only the `top` tenants holding the most connections right now get a `tenant` label (their
    id); everything else is summed under tenant="_other". At most 2 x (top + 1) series, however
    many tenants; a tenant's series disappears when it leaves the top."""

    def __init__(self, gate: Any, top: int) -> None:
        self.gate = gate
        self.top = top

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        busy = self.gate.busy()
        totals: dict[str, int] = {}
        for usage in busy:
            totals[str(usage.tenant_id)] = totals.get(str(usage.tenant_id), 0) + usage.in_use
        shown = set(sorted(totals, key=lambda t: (-totals[t], t))[: self.top])
        in_use = GaugeMetricFamily(
            "storefront_db_tenant_connections",
            "Connections a tenant holds now, per role; the top tenants by connections held are"
            ' labelled, the rest summed as tenant="_other".',
            labels=["tenant", "role"],
        )
        other: dict[str, int] = {}
        waiting: dict[str, int] = {}
        at_cap: dict[str, int] = {}
        for usage in busy:
            waiting[usage.role] = waiting.get(usage.role, 0) + usage.waiting
            if usage.in_use >= usage.limit:
                at_cap[usage.role] = at_cap.get(usage.role, 0) + 1
            if str(usage.tenant_id) in shown:
                in_use.add_metric([str(usage.tenant_id), usage.role], usage.in_use)
            else:
                other[usage.role] = other.get(usage.role, 0) + usage.in_use
        for role, count in other.items():
            in_use.add_metric(["_other", role], count)
        yield in_use
        waiting_family = GaugeMetricFamily(
            "storefront_db_tenant_waiting",
            "Requests waiting for one of their tenant's connection slots, per role.",
            labels=["role"],
        )
        cap_family = GaugeMetricFamily(
            "storefront_db_tenants_at_cap",
            "Tenants holding every connection their policy allows, per role.",
            labels=["role"],
        )
        rejected = CounterMetricFamily(
            "storefront_db_tenant_busy",
            "503 database.tenant_busy: a tenant at its connection cap waited too long.",
            labels=["role"],
        )
        for role, count in self.gate.rejected.items():
            waiting_family.add_metric([role], waiting.get(role, 0))
            cap_family.add_metric([role], at_cap.get(role, 0))
            rejected.add_metric([role], count)
        yield waiting_family
        yield cap_family
        yield rejected


class DatabaseCollector(Collector):
    def __init__(self, database: Database) -> None:
        self.database = database

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        pool = GaugeMetricFamily(
            "storefront_db_pool_connections",
            "Pool connections by state.",
            labels=["engine", "state"],
        )
        breaker = GaugeMetricFamily(
            "storefront_db_breaker_state", "0 closed, 1 half-open, 2 open.", labels=["engine"]
        )
        failures = GaugeMetricFamily(
            "storefront_db_breaker_failures", "Consecutive counted failures.", labels=["engine"]
        )
        up = GaugeMetricFamily(
            "storefront_db_up", "1 when the last probe succeeded.", labels=["engine"]
        )
        lag = GaugeMetricFamily(
            "storefront_db_replica_lag_seconds", "Replay lag (0 when caught up).", labels=["engine"]
        )
        lag_bytes = GaugeMetricFamily(
            "storefront_db_replica_lag_bytes", "WAL bytes not yet replayed.", labels=["engine"]
        )
        reads = CounterMetricFamily(
            "storefront_db_routed_reads", "Read units of work by target.", labels=["engine"]
        )
        busy = CounterMetricFamily(
            "storefront_db_pool_timeouts",
            "Checkouts rejected after pool.timeout.",
            labels=["engine"],
        )
        fallbacks = CounterMetricFamily(
            "storefront_db_read_fallbacks",
            "Reads not served by a fresh replica.",
            labels=["reason"],
        )
        for node in self.database.nodes:
            for state, value in node.pool_status().items():
                pool.add_metric([node.name, state], value)
            breaker.add_metric([node.name], STATE_CODES.get(node.breaker.state, 2))
            failures.add_metric([node.name], node.breaker.fail_counter)
            up.add_metric([node.name], 1 if node.health.reachable else 0)
            reads.add_metric([node.name], node.routed_reads)
            busy.add_metric([node.name], node.busy_rejections)
            if node.role == "replica":
                lag.add_metric([node.name], node.health.lag_seconds or 0.0)
                lag_bytes.add_metric([node.name], node.health.lag_bytes or 0)
        for reason, count in self.database.router.fallbacks.items():
            fallbacks.add_metric([reason], count)
        yield from (pool, breaker, failures, up, lag, lag_bytes, reads, busy, fallbacks)


class OutboxCollector(Collector):
    """Unpublished outbox events (capped count) and the age of the oldest, read from the
    database by `refresh()` just before each scrape; a failed or slow read leaves them out."""

    def __init__(self, backlog: Callable[[], Awaitable[Backlog]]) -> None:
        self.backlog = backlog
        self.last: Backlog | None = None

    async def refresh(self) -> None:
        try:
            async with asyncio.timeout(SCRAPE_QUERY_TIMEOUT_SECONDS):
                self.last = await self.backlog()
        except Exception as error:  # the scrape goes on: the gauges are simply absent
            self.last = None
            log.warning("metrics.outbox_backlog_failed", error=repr(error))

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families(Backlog(0, 0.0))

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.last is not None:
            yield from self._families(self.last)

    @staticmethod
    def _families(backlog: Backlog) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            "storefront_outbox_backlog_events",
            "Outbox events not yet published nor dead-lettered (counted up to a cap).",
            backlog.count,
        )
        yield GaugeMetricFamily(
            "storefront_outbox_oldest_unpublished_age_seconds",
            "Age of the oldest unpublished, not dead-lettered outbox event; 0 when none.",
            backlog.oldest_age_seconds,
        )


@functools.cache
def build_labels() -> tuple[str, str, str]:
    """(version, python, commit): the commit from $GIT_COMMIT (set at image build), else from
    the checkout's git, else `unknown`."""
    try:
        version = importlib.metadata.version("storefront")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    return version, platform.python_version(), _commit()


def _commit() -> str:
    commit = os.environ.get("GIT_COMMIT", "").strip()
    if commit:
        return commit[:40]
    try:
        found = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=2,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    commit = found.stdout.strip()[:40] if found.returncode == 0 else ""
    return commit or "unknown"
