"""Health, readiness, /ops/db and /metrics."""

from __future__ import annotations

from typing import Any

from dependency_injector import providers

from app.ops.service import OpsService
from tests.conftest import OPERATOR_TOKEN, Harness, problem


async def test_live_and_ready(harness: Harness) -> None:
    assert (await harness.client.get("/health/live")).json() == {"status": "live"}
    ready = await harness.client.get("/health/ready")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["primary"]["reachable"] is True
    assert body["primary"]["schema_revision"] == body["primary"]["expected_schema"]
    assert [r["name"] for r in body["replicas"]] == ["replica-1"]


async def test_ready_is_503_when_schema_is_not_at_head(harness: Harness) -> None:
    database = harness.container.database()
    with harness.container.ops_service.override(
        providers.Object(OpsService(database, "9999", harness.container.door()))
    ):
        response = await harness.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["status"] == "not_ready"


async def test_ops_endpoints_need_the_operator_token(harness: Harness) -> None:
    for path in ("/ops/db", "/metrics"):
        missing = await harness.client.get(path)
        assert missing.status_code == 401
        assert problem(missing)["code"] == "auth.unauthenticated"
        wrong = await harness.client.get(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401


async def test_ops_db_and_metrics_show_pools_breakers_and_lag(
    harness: Harness, acme: dict[str, Any]
) -> None:
    await harness.client.get("/v1/products")
    engines = await harness.ops_db()
    assert set(engines) == {"primary", "replica-1"}
    for engine in engines.values():
        assert engine["breaker"] == {"state": "closed", "failures": 0}
        assert {"size", "checked_out", "overflow", "idle", "waiting"} <= set(engine["pool"])
    assert engines["replica-1"]["lag_seconds"] is not None
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    assert metrics.status_code == 200
    text = metrics.text
    for name in (
        "storefront_db_pool_connections",
        "storefront_db_breaker_state",
        "storefront_db_replica_lag_seconds",
        "storefront_db_routed_reads_total",
        "storefront_db_pool_checkout_seconds_bucket",
        "storefront_http_request_duration_seconds_bucket",
        "storefront_http_requests_in_progress",
        "storefront_http_requests_waiting",
        "storefront_http_requests_turned_away_total",
    ):
        assert name in text, name
    assert 'route="/v1/products"' in text
