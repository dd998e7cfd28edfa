"""Tenant policies: defaults < plan < override < emergency, validation, and the fairness gate
(per-tenant connection slots) on its own, with no database."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from app.core.errors import TenantDatabaseBusy
from app.db.fairness import TenantGate
from app.settings import PlanSettings, PolicyDefaults, Settings
from app.tenancy.policy import (
    InvalidOverride,
    TenantPolicy,
    parse_assignments,
    resolve,
    validate_override,
)

TENANT = uuid.UUID("00000000-0000-0000-0000-000000000001")
DEFAULTS = PolicyDefaults(
    requests_per_window=100,
    window_seconds=60,
    burst=0,
    per_api_key=False,
    db_concurrency_primary=2,
    db_concurrency_replica=2,
)
PLANS = {
    "pro": PlanSettings(requests_per_window=1000, burst=100, per_api_key=True),
    "tiny": PlanSettings(db_concurrency_replica=1),
}


def _resolve(plan: str, overrides: object = None, emergency: object = None) -> TenantPolicy:
    return resolve(TENANT, plan, overrides or {}, emergency or {}, defaults=DEFAULTS, plans=PLANS)


def test_each_layer_beats_the_one_below_and_names_its_source() -> None:
    policy = _resolve(
        "pro",
        overrides={"requests_per_window": 5000, "db_concurrency_primary": 4},
        emergency={"requests_per_window": 10},
    )
    assert policy.requests_per_window == 10
    assert policy.sources["requests_per_window"] == "emergency"
    assert (policy.db_concurrency_primary, policy.sources["db_concurrency_primary"]) == (
        4,
        "override",
    )
    assert (policy.burst, policy.sources["burst"]) == (100, "plan:pro")
    assert policy.per_api_key is True
    # Not set by the plan: the defaults.
    assert (policy.window_seconds, policy.sources["window_seconds"]) == (60, "defaults")
    assert (policy.db_concurrency_replica, policy.sources["db_concurrency_replica"]) == (
        2,
        "defaults",
    )
    assert policy.db_concurrency("primary") == 4
    assert policy.db_concurrency("replica") == 2


def test_an_unknown_plan_falls_back_to_the_defaults() -> None:
    policy = _resolve("gone")
    assert not policy.plan_known
    assert policy.values() == DEFAULTS.model_dump()
    assert set(policy.sources.values()) == {"defaults"}


def test_bad_stored_keys_are_ignored_key_by_key() -> None:
    policy = _resolve("tiny", overrides={"burst": 7, "nonsense": 1, "window_seconds": 0})
    assert policy.burst == 7
    assert policy.window_seconds == 60  # 0 is invalid: the stored value is ignored
    assert policy.db_concurrency_replica == 1
    assert _resolve("tiny", overrides=["not", "a", "document"]).burst == 0


def test_invalid_overrides_are_rejected_with_every_reason() -> None:
    with pytest.raises(InvalidOverride) as caught:
        validate_override({"requests_per_minute": "5", "burst": "-1", "per_api_key": "maybe"})
    message = caught.value.detail
    assert "requests_per_minute: unknown key" in message
    assert "burst" in message
    assert "per_api_key" in message
    assert caught.value.code == "tenancy.invalid_override"
    with pytest.raises(InvalidOverride):
        validate_override({"db_concurrency_primary": "1.5"})
    with pytest.raises(InvalidOverride):
        parse_assignments(["burst"])


def test_cli_words_become_typed_values() -> None:
    document = validate_override(
        parse_assignments(["requests_per_window=50", "per_api_key=true", "burst = 3"])
    )
    assert document == {"requests_per_window": 50, "per_api_key": True, "burst": 3}


def test_plans_from_config_and_their_names() -> None:
    settings = Settings()
    assert {"free", "pro", "enterprise"} <= set(settings.plans)
    with pytest.raises(ValueError, match="plan name"):
        Settings(plans={"Bad Name": {}})


# -- the fairness gate ---------------------------------------------------------------------


class Policies:
    """A policy source: one limit for every tenant, changed by the test."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    def cached(self, tenant_id: uuid.UUID) -> TenantPolicy:
        return resolve(
            tenant_id,
            "",
            {"db_concurrency_primary": self.limit, "db_concurrency_replica": self.limit},
            {},
            defaults=DEFAULTS,
            plans={},
        )

    async def policy_for(self, tenant_id: uuid.UUID) -> TenantPolicy:
        return self.cached(tenant_id)


def _in_use(gate: TenantGate, tenant_id: uuid.UUID = TENANT, role: str = "replica") -> int:
    return next((u.in_use for u in gate.usage(tenant_id) if u.role == role), 0)


async def test_a_tenant_at_its_cap_waits_then_gets_tenant_busy() -> None:
    gate = TenantGate(Policies(2), wait_seconds=0.05)
    await gate.acquire(TENANT, "replica")
    await gate.acquire(TENANT, "replica")
    with pytest.raises(TenantDatabaseBusy) as caught:
        await gate.acquire(TENANT, "replica")
    assert caught.value.code == "database.tenant_busy"
    assert caught.value.retry_after == 1
    # Another role, and another tenant, are not affected.
    await gate.acquire(TENANT, "primary")
    await gate.acquire(uuid.uuid4(), "replica")
    assert _in_use(gate) == 2
    assert gate.rejected["replica"] == 1


async def test_a_released_slot_goes_to_the_oldest_waiter() -> None:
    gate = TenantGate(Policies(1), wait_seconds=1.0)
    await gate.acquire(TENANT, "replica")
    order: list[int] = []

    async def wait(n: int) -> None:
        await gate.acquire(TENANT, "replica")
        order.append(n)

    first = asyncio.create_task(wait(1))
    await asyncio.sleep(0)
    second = asyncio.create_task(wait(2))
    await asyncio.sleep(0.01)
    gate.release(TENANT, "replica")
    await first
    assert order == [1]
    assert _in_use(gate) == 1
    gate.release(TENANT, "replica")
    await second
    assert order == [1, 2]
    gate.release(TENANT, "replica")
    assert _in_use(gate) == 0


async def test_cancelled_and_timed_out_waiters_leak_no_slot() -> None:
    gate = TenantGate(Policies(1), wait_seconds=0.2)
    await gate.acquire(TENANT, "replica")
    waiter = asyncio.create_task(gate.acquire(TENANT, "replica"))
    await asyncio.sleep(0.01)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    # Handed a slot and cancelled before it ran: the slot goes back.
    handed = asyncio.create_task(gate.acquire(TENANT, "replica"))
    await asyncio.sleep(0.01)
    gate.release(TENANT, "replica")  # hands it to `handed` ...
    handed.cancel()  # ... which is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await handed
    assert _in_use(gate) == 0
    assert next(u.waiting for u in gate.usage(TENANT)) == 0
    await gate.acquire(TENANT, "replica")  # the slot is free again
    assert _in_use(gate) == 1


async def test_a_changed_limit_applies_to_the_next_request() -> None:
    policies = Policies(1)
    gate = TenantGate(policies, wait_seconds=0.01)
    await gate.acquire(TENANT, "primary")
    with pytest.raises(TenantDatabaseBusy):
        await gate.acquire(TENANT, "primary")
    policies.limit = 2
    await gate.acquire(TENANT, "primary")
    policies.limit = 0  # an emergency stop: refused at once, held slots are not taken back
    with pytest.raises(TenantDatabaseBusy):
        await gate.acquire(TENANT, "primary")
    assert _in_use(gate, role="primary") == 2
