"""Payment breakers per provider account (tenant), and the provider-wide one (issue 8, #4)."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from typing import Any

from tests.conftest import OPERATOR_TOKEN, Harness, problem

SCOPES = ("catalog:read", "catalog:write", "orders:read", "orders:write")
RESET = 1.0
BREAKERS = {
    "timeout_seconds": 0.5,
    "breaker": {"fail_max": 3, "reset_timeout_seconds": RESET},
    "outage": {"min_accounts": 3, "window_seconds": 30, "reset_timeout_seconds": RESET},
}


class Shop:
    """A tenant with its own key and one product."""

    def __init__(self, harness: Harness, key: str, product: str) -> None:
        self.harness, self.key, self.product = harness, key, product

    async def order(self, token: str) -> Any:
        body = {"items": [{"product_id": self.product, "quantity": 1}], "payment": {"token": token}}
        headers = {"X-API-Key": self.key, "Idempotency-Key": str(uuid.uuid4())}
        return await self.harness.client.post("/v1/orders", json=body, headers=headers)


async def _shop(harness: Harness, slug: str) -> Shop:
    _, key = await harness.tenant_with_key(slug, scopes=SCOPES)
    created = await harness.client.post(
        "/v1/products",
        json={
            "sku": "MUG",
            "name": "Mug",
            "price": {"amount": 500, "currency": "EUR"},
            "stock": 99,
        },
        headers={"X-API-Key": key},
    )
    assert created.status_code == 201, created.text
    return Shop(harness, key, created.json()["id"])


async def _metric(harness: Harness, name: str) -> float:
    text = (
        await harness.client.get("/metrics", headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
    ).text
    found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert found, f"{name} not in /metrics"
    return float(found.group(1))


def _unavailable(response: Any) -> None:
    assert response.status_code == 503, response.text
    assert problem(response)["code"] == "payment.unavailable"
    assert int(response.headers["retry-after"]) >= 1


async def test_one_tenants_provider_failures_open_only_its_own_breaker(make_harness: Any) -> None:
    harness = await make_harness(payments=BREAKERS)
    good, bad = await _shop(harness, "good"), await _shop(harness, "bad")
    for _ in range(3):
        _unavailable(await bad.order("tok_error"))
    # Bad's breaker is open: even a good token fails fast, without reaching the provider...
    sandbox = harness.container.sandbox_provider()
    before = len(sandbox.authorizations)
    _unavailable(await bad.order("tok_ok"))
    assert len(sandbox.authorizations) == before
    # ...while the other tenant's orders go through.
    for _ in range(3):
        placed = await good.order("tok_ok")
        assert placed.status_code == 201, placed.text
    assert await _metric(harness, "storefront_payment_breaker_state") == 0
    assert await _metric(harness, 'storefront_payment_account_breakers{state="open"}') == 1
    assert await _metric(harness, 'storefront_payment_account_breakers{state="closed"}') == 1

    await asyncio.sleep(RESET + 0.1)  # the reset timeout: the next call is the trial
    retried = await bad.order("tok_ok")
    assert retried.status_code == 201, retried.text
    assert await _metric(harness, 'storefront_payment_account_breakers{state="open"}') == 0


async def test_failures_across_tenants_open_the_provider_wide_breaker(make_harness: Any) -> None:
    harness = await make_harness(payments=BREAKERS)
    # Seven new tenants (no success yet: each weighs one half, so 3 accounts need 6 of them).
    shops = [await _shop(harness, f"shop-{n}") for n in range(7)]
    failing, latecomer = shops[:6], shops[6]
    for shop in failing[:5]:  # one failure each: no tenant's own breaker opens
        _unavailable(await shop.order("tok_error"))
    assert await _metric(harness, "storefront_payment_breaker_state") == 0  # weight 2.5
    _unavailable(await failing[5].order("tok_error"))  # nobody succeeded: the provider is down
    assert await _metric(harness, "storefront_payment_breaker_state") == 2
    assert await _metric(harness, 'storefront_payment_account_breakers{state="open"}') == 0
    # Every tenant, including one that never failed, now gets a fast 503 (no provider call).
    sandbox = harness.container.sandbox_provider()
    before = len(sandbox.authorizations)
    for shop in shops:
        started = time.monotonic()
        _unavailable(await shop.order("tok_ok"))
        assert time.monotonic() - started < 0.4  # below the provider timeout: no call made
    assert len(sandbox.authorizations) == before

    await asyncio.sleep(RESET + 0.1)
    # The trial is not left to the tenants that just failed (their failures may be their own)...
    _unavailable(await failing[0].order("tok_ok"))
    assert len(sandbox.authorizations) == before
    placed = await latecomer.order("tok_ok")  # ...another's trial succeeds: closed again
    assert placed.status_code == 201, placed.text
    assert await _metric(harness, "storefront_payment_breaker_state") == 0
    for shop in failing:
        again = await shop.order("tok_ok")
        assert again.status_code == 201, again.text


async def test_one_actors_tenants_failing_cannot_stop_other_tenants_payments(
    make_harness: Any,
) -> None:
    """The reviewer's attack: three free sign-ups each send `tok_error` while a victim keeps
    selling; a success anywhere proves the provider is up, so only the attackers are refused."""
    harness = await make_harness(payments=BREAKERS)
    victim = await _shop(harness, "victim")
    attackers = [await _shop(harness, f"attacker-{n}") for n in range(3)]
    placed = await victim.order("tok_ok")
    assert placed.status_code == 201, placed.text
    for _ in range(4):  # past the attackers' own fail_max: their breakers open
        for attacker in attackers:
            _unavailable(await attacker.order("tok_error"))
            placed = await victim.order("tok_ok")
            assert placed.status_code == 201, placed.text
            assert await _metric(harness, "storefront_payment_breaker_state") == 0
    assert await _metric(harness, 'storefront_payment_account_breakers{state="open"}') == 3
    assert await _metric(harness, 'storefront_payment_account_breakers{state="closed"}') == 1
