"""Orders: the saga, idempotency keys, declines, provider outages, cancellation, recovery."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from dependency_injector import providers

from app.catalog.errors import MAX_STOCK
from app.core.money import Money
from app.payments.breakers import ProviderAccount
from app.payments.gateway import PaymentUnavailable
from tests.conftest import OPERATOR_TOKEN, Harness, problem

ORDER_SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write")


async def _shop(harness: Harness, stock: int = 5, price: int = 1299) -> str:
    """Tenant `acme` with an orders key (sent by the client) and one product; its id."""
    _, secret = await harness.tenant_with_key("acme", scopes=ORDER_SCOPES)
    harness.client.headers["X-API-Key"] = secret
    created = await harness.client.post(
        "/v1/products",
        json={
            "sku": "MUG",
            "name": "Mug",
            "price": {"amount": price, "currency": "EUR"},
            "stock": stock,
        },
    )
    assert created.status_code == 201, created.text
    product_id: str = created.json()["id"]
    return product_id


def _order(product_id: str, quantity: int = 1, token: str = "tok_ok") -> dict[str, Any]:
    return {
        "items": [{"product_id": product_id, "quantity": quantity}],
        "payment": {"token": token},
    }


async def _place(harness: Harness, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key or str(uuid.uuid4())}
    return await harness.client.post("/v1/orders", json=body, headers=headers)


async def _stock(harness: Harness, product_id: str) -> int:
    response = await harness.client.get(
        f"/v1/products/{product_id}", headers={"X-Read-Consistency": "strong"}
    )
    stock: int = response.json()["stock"]
    return stock


async def test_an_order_reserves_stock_and_is_confirmed(harness: Harness) -> None:
    product = await _shop(harness, stock=5, price=1299)
    response = await _place(harness, _order(product, 2))
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "confirmed"
    assert order["total"] == {"amount": 2598, "currency": "EUR"}
    assert order["lines"] == [
        {
            "product_id": product,
            "quantity": 2,
            "unit_price": {"amount": 1299, "currency": "EUR"},
            "line_total": {"amount": 2598, "currency": "EUR"},
        }
    ]
    assert response.headers["location"] == f"/v1/orders/{order['id']}"
    assert "idempotent-replayed" not in response.headers
    assert await _stock(harness, product) == 3
    fetched = await harness.client.get(f"/v1/orders/{order['id']}")
    assert fetched.json() == order
    listed = await harness.client.get("/v1/orders")
    assert [o["id"] for o in listed.json()["items"]] == [order["id"]]


async def test_the_idempotency_key_is_required_and_replays(harness: Harness) -> None:
    product = await _shop(harness)
    missing = await harness.client.post("/v1/orders", json=_order(product))
    assert missing.status_code == 400
    assert problem(missing)["code"] == "idempotency.key_required"

    first = await _place(harness, _order(product), key="k-1")
    again = await _place(harness, _order(product), key="k-1")
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert await _stock(harness, product) == 4  # one order, not two

    other = await _place(harness, _order(product, 2), key="k-1")
    assert other.status_code == 422
    assert problem(other)["code"] == "idempotency.mismatch"


async def test_twenty_concurrent_requests_with_one_key_make_one_order(harness: Harness) -> None:
    product = await _shop(harness, stock=50)
    responses = await asyncio.gather(
        *(_place(harness, _order(product), key="same") for _ in range(20))
    )
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 409}, statuses
    created = [r.json() for r in responses if r.status_code == 201]
    assert created
    assert all(body == created[0] for body in created)
    for response in responses:
        if response.status_code == 409:
            assert problem(response)["code"] == "idempotency.in_flight"
    listed = await harness.client.get("/v1/orders", headers={"X-Read-Consistency": "strong"})
    assert len(listed.json()["items"]) == 1
    assert await _stock(harness, product) == 49


async def test_fifty_buyers_of_thirty_units_get_thirty_orders(harness: Harness) -> None:
    product = await _shop(harness, stock=30)
    responses = await asyncio.gather(*(_place(harness, _order(product)) for _ in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(201) == 30, statuses
    assert statuses.count(409) == 20
    assert all(
        problem(r)["code"] == "inventory.insufficient" for r in responses if r.status_code == 409
    )
    assert await _stock(harness, product) == 0


async def test_lines_are_all_or_nothing(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    other = await harness.client.post(
        "/v1/products",
        json={"sku": "CUP", "name": "Cup", "price": {"amount": 100, "currency": "EUR"}, "stock": 1},
    )
    body = {
        "items": [
            {"product_id": product, "quantity": 2},
            {"product_id": other.json()["id"], "quantity": 2},
        ],
        "payment": {"token": "tok_ok"},
    }
    response = await _place(harness, body)
    assert response.status_code == 409
    assert await _stock(harness, product) == 5
    unknown = await _place(harness, _order(str(uuid.uuid4())))
    assert unknown.status_code == 422
    assert problem(unknown)["code"] == "order.unknown_product"


async def test_a_decline_gives_the_stock_back_and_is_replayed(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    declined = await _place(harness, _order(product, 2, "tok_declined"), key="d-1")
    assert declined.status_code == 402
    assert problem(declined)["code"] == "payment.declined"
    assert await _stock(harness, product) == 5
    listed = await harness.client.get("/v1/orders", headers={"X-Read-Consistency": "strong"})
    assert [o["status"] for o in listed.json()["items"]] == ["payment_failed"]
    again = await _place(harness, _order(product, 2, "tok_declined"), key="d-1")
    assert again.status_code == 402
    assert again.headers["idempotent-replayed"] == "true"


@pytest.mark.parametrize("token", ["tok_error", "tok_timeout"])
async def test_a_provider_outage_is_503_restocks_and_keeps_the_key(
    make_harness: Any, token: str
) -> None:
    harness = await make_harness(
        payments={"timeout_seconds": 0.3, "breaker": {"fail_max": 2, "reset_timeout_seconds": 1}}
    )
    product = await _shop(harness, stock=5)
    first = await _place(harness, _order(product, 1, token), key="o-1")
    assert first.status_code == 503
    assert problem(first)["code"] == "payment.unavailable"
    assert "retry-after" in first.headers
    assert await _stock(harness, product) == 5
    # The second failure opens the breaker; then even good tokens fail fast without a call.
    await _place(harness, _order(product, 1, token))
    fast = await _place(harness, _order(product, 1, "tok_ok"), key="o-2")
    assert fast.status_code == 503
    assert int(fast.headers["retry-after"]) >= 1
    metrics = await harness.client.get(
        "/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}
    )
    # The tenant's own breaker: one tenant's failures are not a provider-wide outage.
    assert 'storefront_payment_account_breakers{state="open"} 1.0' in metrics.text
    assert "storefront_payment_breaker_state 0.0" in metrics.text
    assert await _stock(harness, product) == 5
    # After reset_timeout the breaker lets a trial call through: the same key goes through
    # (a 503 did not consume it).
    await asyncio.sleep(1.1)
    retried = await _place(harness, _order(product, 1, "tok_ok"), key="o-2")
    assert retried.status_code == 201, retried.text
    assert await _stock(harness, product) == 4


async def test_a_rejected_token_is_a_final_422(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    rejected = await _place(harness, _order(product, 1, "tok_invalid"), key="r-1")
    assert rejected.status_code == 422
    assert problem(rejected)["code"] == "payment.rejected"
    assert await _stock(harness, product) == 5
    again = await _place(harness, _order(product, 1, "tok_invalid"), key="r-1")
    assert again.headers["idempotent-replayed"] == "true"


class LosesTheReply:
    """The provider authorizes, but the answer is lost on the way back (a timeout after the
    provider acted): the order is compensated and the key released."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.calls = 0

    async def authorize(
        self, account: ProviderAccount, idempotency_key: str, token: str, amount: Money
    ) -> str:
        self.calls += 1
        await self.real.authorize(account, idempotency_key, token, amount)
        if self.calls == 1:
            raise PaymentUnavailable("timed out")
        return str(await self.real.authorize(account, idempotency_key, token, amount))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


async def test_a_retry_after_a_lost_reply_reuses_the_authorization(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    real = harness.container.payment_gateway()
    with harness.container.payment_gateway.override(providers.Object(LosesTheReply(real))):
        harness.container.order_service.reset()
        lost = await _place(harness, _order(product, 1), key="late-1")
        assert lost.status_code == 503
        assert await _stock(harness, product) == 5
        retried = await _place(harness, _order(product, 1), key="late-1")
        assert retried.status_code == 201, retried.text
    harness.container.order_service.reset()
    sandbox = harness.container.sandbox_provider()
    assert len(sandbox.authorizations) == 1  # one hold, not two
    assert await _stock(harness, product) == 4


async def test_cancel_at_the_stock_cap_restocks_up_to_the_cap(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    order = (await _place(harness, _order(product, 2))).json()
    top_up = MAX_STOCK - 4  # stock 3 -> MAX_STOCK - 1: one of the two units still fits
    response = await harness.client.post(
        f"/v1/products/{product}/stock-adjustments", json={"delta": top_up, "reason": "top up"}
    )
    assert response.status_code == 201, response.text
    cancelled = await harness.client.post(f"/v1/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await _stock(harness, product) == MAX_STOCK  # capped (the dropped unit is logged)
    # And the product stays usable: it is not stuck above its own limit.
    down = await harness.client.post(
        f"/v1/products/{product}/stock-adjustments", json={"delta": -1, "reason": "count"}
    )
    assert down.status_code == 201, down.text


async def test_an_order_whose_total_would_not_fit_is_a_422(harness: Harness) -> None:
    product = await _shop(harness, stock=MAX_STOCK, price=10**12)  # the highest price allowed
    too_much = await _place(harness, _order(product, 1), key="big-1")
    assert too_much.status_code == 422, too_much.text
    assert problem(too_much)["code"] == "order.total_limit"
    # The same product in many items: 50 x 1,000 units is one line of 50,000.
    body = {
        "items": [{"product_id": product, "quantity": 1000}] * 50,
        "payment": {"token": "tok_ok"},
    }
    many = await _place(harness, body, key="big-2")
    assert many.status_code == 422, many.text
    assert problem(many)["code"] == "order.quantity_limit"
    assert await _stock(harness, product) == MAX_STOCK  # nothing reserved
    listed = await harness.client.get("/v1/orders", headers={"X-Read-Consistency": "strong"})
    assert listed.json()["items"] == []
    # The key was not consumed: the same request is evaluated again, not replayed.
    again = await _place(harness, _order(product, 1), key="big-1")
    assert again.status_code == 422
    assert "idempotent-replayed" not in again.headers


async def test_concurrent_recoveries_settle_an_order_once(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    await _crash_between_steps(harness, "crash-2", product, "tok_ok")
    harness.clock.advance(seconds=61)
    service = harness.container.order_service()
    results = await asyncio.gather(service.recover(), service.recover(), service.recover())
    assert sum(results) == 1
    assert len(harness.container.sandbox_provider().authorizations) == 1
    assert await _stock(harness, product) == 3


async def test_expired_idempotency_keys_are_purged(harness: Harness) -> None:
    product = await _shop(harness)
    await _place(harness, _order(product), key="old")
    service = harness.container.order_service()
    assert await service.purge_expired_keys() == 0
    # A day later (by the database's clock: the purge never trusts an application clock).
    harness.cluster.psql(
        "primary", "UPDATE idempotency_keys SET expires_at = now() - '1s'::interval"
    )
    assert await service.purge_expired_keys() == 1
    again = await _place(harness, _order(product), key="old")  # a new order now
    assert again.status_code == 201
    assert "idempotent-replayed" not in again.headers


async def test_cancel_voids_restocks_once(harness: Harness) -> None:
    product = await _shop(harness, stock=5)
    order = (await _place(harness, _order(product, 3))).json()
    cancelled = await harness.client.post(f"/v1/orders/{order['id']}/cancel")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await _stock(harness, product) == 5
    again = await harness.client.post(f"/v1/orders/{order['id']}/cancel")
    assert again.status_code == 200
    assert await _stock(harness, product) == 5  # restocked once
    sandbox = harness.container.sandbox_provider()
    assert [a["status"] for a in sandbox.authorizations.values()] == ["voided"]
    declined = await _place(harness, _order(product, 1, "tok_declined"))
    assert declined.status_code == 402
    listed = await harness.client.get("/v1/orders", headers={"X-Read-Consistency": "strong"})
    failed = next(o for o in listed.json()["items"] if o["status"] == "payment_failed")
    refused = await harness.client.post(f"/v1/orders/{failed['id']}/cancel")
    assert refused.status_code == 409
    assert problem(refused)["code"] == "order.not_cancellable"


async def _crash_between_steps(harness: Harness, key: str, product: str, token: str) -> None:
    """Place an order of 2 whose process 'dies' after reserving, before the payment."""
    container = harness.container
    tenant = await container.tenant_service().by_slug("acme")
    crashing = CrashingGateway(container.payment_gateway())
    with container.payment_gateway.override(providers.Object(crashing)):
        container.order_service.reset()  # built with the real gateway: rebuild with this one
        with pytest.raises(asyncio.CancelledError):
            await container.order_service().place(
                tenant.id, key, b"fp", [(uuid.UUID(product), 2)], token
            )
    container.order_service.reset()  # and back to the real gateway


class CrashingGateway:
    """The real gateway, but the process 'dies' (the task is cancelled) right before the
    authorization: the saga stops between reserving stock and settling the payment."""

    def __init__(self, real: Any) -> None:
        self.real = real

    async def authorize(
        self, account: ProviderAccount, idempotency_key: str, token: str, amount: Money
    ) -> str:
        raise asyncio.CancelledError

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


@pytest.mark.parametrize(
    ("token", "settled"), [("tok_ok", "confirmed"), ("tok_declined", "payment_failed")]
)
async def test_the_worker_settles_an_order_a_crash_left_pending(
    harness: Harness, token: str, settled: str
) -> None:
    product = await _shop(harness, stock=5)
    await _crash_between_steps(harness, "crash-1", product, token)
    assert await _stock(harness, product) == 3  # reserved, not settled
    pending = await _place(harness, _order(product, 2, token), key="crash-1")
    assert pending.status_code in (409, 422)  # the key is still in flight (or differs)

    service = harness.container.order_service()
    assert await service.recover() == 0  # too young: it may still be in progress
    harness.clock.advance(seconds=61)
    assert await service.recover() == 1
    listed = await harness.client.get("/v1/orders", headers={"X-Read-Consistency": "strong"})
    assert [o["status"] for o in listed.json()["items"]] == [settled]
    assert await _stock(harness, product) == (3 if settled == "confirmed" else 5)
    assert await service.recover() == 0  # nothing left


async def test_the_hot_path_and_the_fastapi_route_place_orders_alike(harness: Harness) -> None:
    """POST /v1/orders with `Content-Type: application/json`, a well-formed key and a body that
    validates takes the hot path (app/http/hot.py); with a charset parameter it goes through
    FastAPI. Either way: the same status, header names, body shape and problem codes. A body
    the hot path declines must reach FastAPI whole (its 422 names the failing field)."""
    product = await _shop(harness, stock=100)
    _, reader_key = await harness.tenant_with_key("initech", scopes=("orders:read",))
    unknown = "00000000-0000-4000-8000-000000000000"
    cases: list[tuple[dict[str, Any] | bytes, dict[str, str]]] = [
        (_order(product), {}),
        (_order(product, 2, "tok_declined"), {}),  # 402
        (_order(product, 1000), {}),  # 409 not enough stock
        (_order(unknown), {}),  # 422 unknown product
        (_order(product), {"X-API-Key": ""}),  # 401
        (_order(product), {"X-API-Key": reader_key}),  # 403
        ({"items": [], "payment": {"token": "tok_ok"}}, {}),  # 422 from validation
        (b'{"items": [', {}),  # 422 malformed JSON
        (_order(product), {"Idempotency-Key": "has space"}),  # 422 header pattern
    ]
    volatile = {"x-request-id", "date", "ratelimit", "ratelimit-policy", "location"}
    volatile |= {"x-consistency-token"}
    for body, extra in cases:
        answers = []
        for content_type in ("application/json", "application/json; charset=utf-8"):
            content = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers = {
                "Content-Type": content_type,
                "Idempotency-Key": str(uuid.uuid4()),
                **extra,
            }
            answers.append(
                await harness.client.post("/v1/orders", content=content, headers=headers)
            )
        hot, slow = answers
        assert hot.status_code == slow.status_code, (body, extra, hot.text, slow.text)
        assert set(hot.headers) == set(slow.headers), (body, extra)
        skip = volatile | {"content-length"}
        assert {k: v for k, v in hot.headers.items() if k not in skip} == {
            k: v for k, v in slow.headers.items() if k not in skip
        }
        if hot.status_code >= 400:
            ignored = {"instance", "request_id"}
            assert {k: v for k, v in problem(hot).items() if k not in ignored} == {
                k: v for k, v in problem(slow).items() if k not in ignored
            }
        else:
            moving = {"id", "created_at", "updated_at"}
            assert {k: v for k, v in hot.json().items() if k not in moving} == {
                k: v for k, v in slow.json().items() if k not in moving
            }
    empty = await harness.client.post(
        "/v1/orders",
        json={"items": [], "payment": {"token": "tok_ok"}},
        headers={"Idempotency-Key": "k-empty"},
    )
    assert empty.status_code == 422
    assert "items" in json.dumps(problem(empty)), problem(empty)
