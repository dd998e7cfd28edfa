"""Property: whatever mix of concurrent stock adjustments arrives, stock never goes negative and
the final stock is exactly the initial stock plus the adjustments that were accepted."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Harness

deltas = st.lists(st.integers(min_value=-7, max_value=5).filter(bool), min_size=1, max_size=12)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(initial=st.integers(min_value=0, max_value=10), batch=deltas)
async def test_concurrent_adjustments_keep_stock_exact_and_non_negative(
    harness: Harness, acme: dict[str, Any], initial: int, batch: list[int]
) -> None:
    created = await harness.client.post(
        "/v1/products",
        json={
            "sku": f"P-{uuid.uuid4().hex[:12]}",
            "name": "Prop",
            "price": {"amount": 1, "currency": "EUR"},
            "stock": initial,
        },
    )
    url = f"/v1/products/{created.json()['id']}/stock-adjustments"
    responses = await asyncio.gather(
        *(harness.client.post(url, json={"delta": d, "reason": "prop"}) for d in batch)
    )
    assert {r.status_code for r in responses} <= {201, 409}
    accepted = [d for d, r in zip(batch, responses, strict=True) if r.status_code == 201]
    assert all(r.json()["stock"] >= 0 for r in responses if r.status_code == 201)
    final = await harness.client.get(
        f"/v1/products/{created.json()['id']}", headers={"X-Read-Consistency": "strong"}
    )
    assert final.json()["stock"] == initial + sum(accepted)
    assert final.json()["stock"] >= 0
    # A refused decrement was refused for a reason: applying it then would have gone negative.
    assert all(d < 0 for d, r in zip(batch, responses, strict=True) if r.status_code == 409)
