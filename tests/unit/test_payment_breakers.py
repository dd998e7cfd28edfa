"""The payment breakers' bookkeeping (no I/O): the bounded set and the outage detector."""

from __future__ import annotations

import uuid

import pybreaker

from app.payments.breakers import PaymentBreakers, ProviderAccount
from app.settings import PaymentSettings


def _account() -> ProviderAccount:
    return ProviderAccount.of_tenant(uuid.uuid4())


def test_the_set_is_bounded_and_evicts_closed_breakers_before_open_ones() -> None:
    breakers = PaymentBreakers(PaymentSettings(max_account_breakers=3))
    tripped = _account()
    breakers.for_account(tripped).open()
    others = [_account() for _ in range(10)]
    for account in others:
        breakers.for_account(account)
    assert len(breakers) == 3
    assert breakers.for_account(tripped).current_state == pybreaker.STATE_OPEN  # kept
    assert breakers.account_states()[pybreaker.STATE_OPEN] == 1
    assert breakers.evicted == 8


def test_credentials_name_the_account_when_a_tenant_has_its_own() -> None:
    tenant = uuid.uuid4()
    assert ProviderAccount.of_tenant(tenant).key == f"tenant:{tenant}"
    shared = ProviderAccount(uuid.uuid4(), "cred-1")
    assert shared.key == ProviderAccount(uuid.uuid4(), "cred-1").key == "credentials:cred-1"


def test_the_provider_breaker_opens_on_distinct_accounts_within_the_window() -> None:
    now = [0.0]
    settings = PaymentSettings(outage={"min_accounts": 3, "window_seconds": 10})
    breakers = PaymentBreakers(settings, monotonic=lambda: now[0])
    one, two, three = _account(), _account(), _account()
    for _ in range(5):
        breakers.failed(one)  # one account failing, however often, is not an outage
    breakers.failed(two)
    breakers.succeeded(two)  # answered since: not counted
    now[0] = 11.0
    breakers.failed(two)
    breakers.failed(three)  # `one` failed 11 s ago: outside the window
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED
    breakers.failed(one)
    assert breakers.provider.current_state == pybreaker.STATE_OPEN
