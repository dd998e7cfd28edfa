"""/metrics of every process, parsed as Prometheus parses it: the API (in-process and served)
and a real `storefront worker` whose relay counts move when an order is placed."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import OPERATOR_TOKEN, Harness
from tests.served_app import free_port, served_env
from tests.unit.test_alert_rules import alert_rules, dashboard_queries

OPS = {"Authorization": f"Bearer {OPERATOR_TOKEN}"}
SHOP = ("catalog:write", "orders:read", "orders:write")


def parse(text: str) -> dict[str, Metric]:
    """Every line must parse; no `_created` series anywhere."""
    families = {family.name: family for family in text_string_to_metric_families(text)}
    created = [s.name for f in families.values() for s in f.samples if s.name.endswith("_created")]
    assert created == [], created
    return families


def value(families: dict[str, Metric], sample: str, **labels: str) -> float | None:
    for family in families.values():
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def exposed_names(families: dict[str, Metric]) -> set[str]:
    """What a PromQL expression may name: every sample name and family name (a labelled
    metric with no series yet still has its family)."""
    names = set(families)
    for family in families.values():
        names |= {s.name for s in family.samples}
        if family.type == "counter":
            names.add(f"{family.name}_total")
        if family.type == "histogram":
            names |= {f"{family.name}_{x}" for x in ("bucket", "count", "sum")}
    return names


def assert_process_metrics(families: dict[str, Metric], process: str) -> None:
    info = families["storefront_build_info"].samples
    assert [s.labels["process"] for s in info] == [process]
    assert {"version", "python", "commit"} <= set(info[0].labels)
    assert info[0].labels["commit"]  # a commit, or "unknown"
    for name in ("process_cpu_seconds", "process_resident_memory_bytes", "python_info"):
        assert name in families, name


async def _order(client: httpx.AsyncClient, product: str, token: str, key: str) -> httpx.Response:
    return await client.post(
        "/v1/orders",
        json={"items": [{"product_id": product, "quantity": 1}], "payment": {"token": token}},
        headers={"Idempotency-Key": key},
    )


async def test_api_metrics_count_orders_payments_replays_and_the_backlog(
    harness: Harness,
) -> None:
    _, secret = await harness.tenant_with_key("acme", scopes=SHOP)
    harness.client.headers["X-API-Key"] = secret
    product = await harness.client.post(
        "/v1/products",
        json={"sku": "M", "name": "M", "price": {"amount": 500, "currency": "EUR"}, "stock": 5},
    )
    await harness.container.outbox_relay().drain()
    first = await _order(harness.client, product.json()["id"], "tok_ok", "k-1")
    assert first.status_code == 201
    assert (await _order(harness.client, product.json()["id"], "tok_ok", "k-1")).status_code == 201
    declined = await _order(harness.client, product.json()["id"], "tok_declined", "k-2")
    assert declined.status_code == 402
    cancelled = await harness.client.post(f"/v1/orders/{first.json()['id']}/cancel")
    assert cancelled.status_code == 200

    metrics = await harness.client.get("/metrics", headers=OPS)
    families = parse(metrics.text)
    assert_process_metrics(families, "api")
    assert value(families, "storefront_orders_total", outcome="placed") == 1
    assert value(families, "storefront_orders_total", reason="payment.declined") == 1
    assert value(families, "storefront_orders_total", outcome="cancelled") == 1
    assert value(families, "storefront_idempotent_replays_total") == 1
    payments = "storefront_payment_request_duration_seconds_count"
    assert value(families, payments, operation="authorize", result="ok") == 1
    assert value(families, payments, operation="authorize", result="declined") == 1
    assert value(families, payments, operation="void", result="ok") == 1
    # Not relayed yet (no relay in the API here): placed, paid, cancelled, the 402's placed.
    assert value(families, "storefront_outbox_backlog_events") == 4
    oldest = value(families, "storefront_outbox_oldest_unpublished_age_seconds")
    assert oldest is not None
    assert 0 < oldest < 60

    await harness.container.outbox_relay().drain()
    families = parse((await harness.client.get("/metrics", headers=OPS)).text)
    assert value(families, "storefront_outbox_backlog_events") == 0
    assert value(families, "storefront_outbox_oldest_unpublished_age_seconds") == 0


@contextmanager
def running_worker(cluster: Any, workdir: Path) -> Iterator[tuple[str, Path]]:
    """A real `storefront worker` with /metrics on a free port; yields (its URL, its log)."""
    port = free_port()
    log = workdir / f"worker-{port}.log"
    env = {
        **served_env(cluster),
        "STOREFRONT_WORKER__METRICS_PORT": str(port),
        "STOREFRONT_LOGGING__LEVEL": "INFO",
    }
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], env=env, stdout=out, stderr=out
        )
    try:
        yield f"http://127.0.0.1:{port}/metrics", log
    finally:
        worker.terminate()
        assert worker.wait(timeout=15) == 0, _tail(log)  # SIGTERM: a clean stop


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


async def _scrape(url: str, within: float = 20.0) -> dict[str, Metric]:
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(headers=OPS, timeout=2) as client:
        while True:
            try:
                response = await client.get(url)
            except httpx.TransportError:  # not listening yet
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
                continue
            assert response.status_code == 200, response.text
            return parse(response.text)


async def _scrape_until(url: str, log: Path, done: Callable[[dict[str, Metric]], bool]) -> Any:
    deadline = time.monotonic() + 20
    while not done(families := await _scrape(url)):
        assert time.monotonic() < deadline, _tail(log)
        await asyncio.sleep(0.2)
    return families


def _published(families: dict[str, Metric]) -> float:
    return value(families, "storefront_outbox_events_total", result="published") or 0.0


async def test_the_worker_serves_metrics_whose_relay_counts_move_with_orders(
    harness: Harness, served_apps: Any, tmp_path: Path
) -> None:
    app = served_apps()
    _, secret = await harness.tenant_with_key("acme", scopes=SHOP)
    async with httpx.AsyncClient(base_url=app.url, headers={"X-API-Key": secret}) as client:
        product = await client.post(
            "/v1/products",
            json={"sku": "M", "name": "M", "price": {"amount": 500, "currency": "EUR"}, "stock": 5},
        )
        assert product.status_code == 201
        with running_worker(harness.cluster, tmp_path) as (url, log):
            families = await _scrape(url)
            assert (await client.get(url, headers={"X-API-Key": ""})).status_code == 401
            assert_process_metrics(families, "worker")
            for name in ("storefront_db_pool_connections", "storefront_payment_breaker_state"):
                assert name in families, name
            # The product's event drained first, then an order moves the relay's count.
            idle = await _scrape_until(
                url, log, lambda f: value(f, "storefront_outbox_backlog_events") == 0
            )
            before = _published(idle)
            placed = await _order(client, product.json()["id"], "tok_ok", str(uuid.uuid4()))
            assert placed.status_code == 201
            # order.placed and order.paid
            await _scrape_until(url, log, lambda f: _published(f) >= before + 2)
        api = parse((await client.get("/metrics", headers=OPS)).text)
    assert_process_metrics(api, "api")
    assert value(api, "storefront_orders_total", outcome="placed") == 1
    assert "storefront_outbox_backlog_events" in api


METRIC_NAME = re.compile(r"\b(?:storefront|process|python)_[a-z0-9_]+\b")


async def test_alert_rules_and_the_dashboard_name_only_metrics_the_processes_export(
    served_apps: Any, cluster: Any, tmp_path: Path
) -> None:
    app = served_apps()
    with running_worker(cluster, tmp_path) as (url, _):
        exported = exposed_names(await _scrape(url))
    async with httpx.AsyncClient(headers=OPS) as client:
        exported |= exposed_names(parse((await client.get(f"{app.url}/metrics")).text))
    queries = [rule["expr"] for rule in alert_rules()] + dashboard_queries()
    for query in queries:
        named = set(METRIC_NAME.findall(query))
        assert named, query
        assert named <= exported, f"{sorted(named - exported)} not exported: {query}"


def test_a_worker_whose_metrics_port_is_taken_stops_with_one_line(cluster: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ran = subprocess.run(
            [sys.executable, "-m", "app.cli", "worker"],
            env={**served_env(cluster), "STOREFRONT_WORKER__METRICS_PORT": str(port)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert ran.returncode == 1, ran.stderr
    assert ran.stderr.splitlines() == [
        f"error: worker.metrics_port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
