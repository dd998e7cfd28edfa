"""The payment breakers' bookkeeping (no I/O but short sleeps for pybreaker's reset timer): the
bounded set and the outage detector."""

from __future__ import annotations

import time
import uuid

import pybreaker

from app.payments.breakers import PaymentBreakers, ProviderAccount, ProviderFailure
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


def _detector(**outage: float) -> tuple[PaymentBreakers, list[float]]:
    now = [0.0]
    settings = PaymentSettings(outage={"min_accounts": 3, "window_seconds": 10, **outage})
    return PaymentBreakers(settings, monotonic=lambda: now[0]), now


def _proven(breakers: PaymentBreakers, count: int) -> list[ProviderAccount]:
    accounts = [_account() for _ in range(count)]
    for account in accounts:
        breakers.succeeded(account)
    return accounts


def test_the_provider_breaker_opens_on_distinct_accounts_within_the_window() -> None:
    breakers, now = _detector()
    one, two, three = _proven(breakers, 3)
    now[0] = 11.0  # those successes are outside the window now
    for _ in range(5):
        breakers.failed(one)  # one account failing, however often, is not an outage
    breakers.failed(two)
    breakers.succeeded(two)  # answered since: not counted (and the provider is up)
    now[0] = 22.0
    breakers.failed(two)
    breakers.failed(three)  # `one` failed 11 s ago: outside the window
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED
    breakers.failed(one)
    assert breakers.provider.current_state == pybreaker.STATE_OPEN


def test_a_success_anywhere_within_the_window_keeps_it_closed() -> None:
    breakers, now = _detector()
    attackers = _proven(breakers, 5)  # even accounts that once succeeded
    victim = _account()
    now[0] = 20.0
    breakers.succeeded(victim)
    for step in range(10):  # every attacker fails again and again, the victim is served
        now[0] = 21.0 + step
        for attacker in attackers:
            breakers.failed(attacker)
        assert breakers.provider.current_state == pybreaker.STATE_CLOSED
        assert breakers.refuses(victim) == 0
    breakers.succeeded(victim)
    now[0] = 40.0  # the victim's last success was 10 s ago: still inside the window
    for attacker in attackers:
        breakers.failed(attacker)
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED
    now[0] = 40.5  # nobody succeeded for more than the window: the provider is down
    breakers.failed(attackers[0])
    assert breakers.provider.current_state == pybreaker.STATE_OPEN


def test_accounts_that_never_succeeded_weigh_one_half() -> None:
    breakers, _ = _detector()
    for _ in range(5):
        breakers.failed(_account())
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED  # 2.5 < 3
    breakers.failed(_account())
    assert breakers.provider.current_state == pybreaker.STATE_OPEN

    mixed, now = _detector()
    old = _proven(mixed, 2)
    now[0] = 11.0
    for account in (*old, _account()):
        mixed.failed(account)
    assert mixed.provider.current_state == pybreaker.STATE_CLOSED  # 2.5
    mixed.failed(_account())
    assert mixed.provider.current_state == pybreaker.STATE_OPEN  # 3


def _trial(breakers: PaymentBreakers, account: ProviderAccount, ok: bool) -> None:
    """What the gateway does for one call through the provider-wide breaker."""
    assert breakers.refuses(account) == 0
    try:
        with breakers.provider.calling():
            if not ok:
                raise ProviderFailure("500")
    except ProviderFailure:
        breakers.failed(account)
    else:
        breakers.succeeded(account)


def test_half_open_the_trial_is_left_to_accounts_without_a_recent_failure() -> None:
    breakers, now = _detector(reset_timeout_seconds=0.05)
    failing = _proven(breakers, 3)
    now[0] = 11.0
    for account in failing:
        breakers.failed(account)
    assert breakers.provider.current_state == pybreaker.STATE_OPEN
    bystander = _account()
    assert breakers.refuses(bystander) > 0  # open: everyone waits
    time.sleep(0.06)
    # Due for a trial: the accounts that just failed may not make it (their failure may be
    # their own, and failing every trial would keep the provider-wide breaker open forever)...
    for account in failing:
        assert breakers.refuses(account) > 0
    # ...another account's failed trial reopens it...
    _trial(breakers, bystander, ok=False)
    assert breakers.provider.current_state == pybreaker.STATE_OPEN
    assert breakers.refuses(bystander) > 0
    time.sleep(0.06)
    # ...and a success from any account closes it (the failing ones are served again).
    other = _account()
    _trial(breakers, other, ok=True)
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED
    for account in (*failing, bystander):
        assert breakers.refuses(account) == 0
    for account in (*failing, bystander):  # the success keeps it closed for the window
        breakers.failed(account)
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED


def test_failed_accounts_may_make_the_trial_once_their_failure_left_the_window() -> None:
    breakers, now = _detector(reset_timeout_seconds=0.05)
    failing = _proven(breakers, 3)
    now[0] = 11.0
    for account in failing:
        breakers.failed(account)
    time.sleep(0.06)
    assert breakers.refuses(failing[0]) > 0
    now[0] = 21.5
    _trial(breakers, failing[0], ok=True)
    assert breakers.provider.current_state == pybreaker.STATE_CLOSED
