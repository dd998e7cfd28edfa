"""Properties of concurrent orders on the real database: stock is conserved and never negative,
and every idempotency key yields at most one order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Harness

# An order: (product index, quantity) lines, a token, and which of a few keys it reuses.
lines = st.lists(
    st.tuples(st.integers(0, 2), st.integers(1, 4)),
    min_size=1,
    max_size=3,
    unique_by=lambda x: x[0],
)
orders = st.lists(
    st.tuples(lines, st.sampled_from(["tok_ok", "tok_ok", "tok_declined"]), st.integers(0, 5)),
    min_size=1,
    max_size=14,
)


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    database=None,
)
@given(stocks=st.lists(st.integers(0, 6), min_size=3, max_size=3), mix=orders)
async def test_concurrent_order_mixes_conserve_stock(
    harness: Harness, acme_orders: dict[str, Any], stocks: list[int], mix: list[Any]
) -> None:
    run = uuid.uuid4().hex[:8]
    products = []
    for n, stock in enumerate(stocks):
        created = await harness.client.post(
            "/v1/products",
            json={
                "sku": f"P{n}-{run}",
                "name": "Prop",
                "price": {"amount": 100 * (n + 1), "currency": "EUR"},
                "stock": stock,
            },
        )
        products.append(created.json()["id"])

    def body(order: Any) -> dict[str, Any]:
        items = [{"product_id": products[i], "quantity": q} for i, q in order[0]]
        return {"items": items, "payment": {"token": order[1]}}

    responses = await asyncio.gather(
        *(
            harness.client.post(
                "/v1/orders", json=body(o), headers={"Idempotency-Key": f"{run}-{o[2]}"}
            )
            for o in mix
        )
    )
    assert {r.status_code for r in responses} <= {201, 402, 409, 422}, [r.text for r in responses]

    final = []
    for product_id in products:
        read = await harness.client.get(
            f"/v1/products/{product_id}", headers={"X-Read-Consistency": "strong"}
        )
        final.append(read.json()["stock"])
    assert all(stock >= 0 for stock in final)

    everything: list[dict[str, Any]] = []
    cursor = ""
    while True:  # every order so far (earlier examples' too), page by page
        page = await harness.client.get(
            f"/v1/orders?limit=100{cursor}", headers={"X-Read-Consistency": "strong"}
        )
        everything += page.json()["items"]
        if not page.json()["next_cursor"]:
            break
        cursor = f"&cursor={page.json()['next_cursor']}"
    mine = [o for o in everything if o["lines"][0]["product_id"] in products]
    confirmed = [o for o in mine if o["status"] == "confirmed"]
    sold = dict.fromkeys(products, 0)
    for order in confirmed:
        for item in order["lines"]:
            sold[item["product_id"]] += item["quantity"]
    # Conservation: what is left + what confirmed orders hold = what there was.
    assert [final[i] + sold[p] for i, p in enumerate(products)] == stocks
    # One order per key: keys used by several requests produced at most one order.
    assert len(mine) <= len({o[2] for o in mix})
    assert not [o for o in mine if o["status"] == "pending"]
