"""Payment breakers: one per provider account (bounded, LRU), plus a provider-wide one.

A failing account (one tenant's credentials, card mix or provider-side account problem) opens
only its own breaker, so other tenants keep taking payments. The provider-wide breaker is not
opened by a count of failures but by their spread, and only while nobody succeeds: it opens when
accounts with a counted failure within `outage.window_seconds` weigh at least
`outage.min_accounts` AND no account succeeded within that window. A success anywhere proves the
provider is up, so failures while others succeed stay with the failing accounts' own breakers
(one actor with a few free tenants cannot stop everyone's payments). An account that has never
succeeded (in this process) weighs one half: a brand-new tenant is cheap to make.

Half-open (after `outage.reset_timeout_seconds`): a call from an account without a failure in the
window is the trial; a success from any account closes the breaker, a failed trial reopens it.
Accounts that already failed within the window keep failing fast until it is decided, so they
cannot keep it open by failing each trial themselves.

Breaker state is per process and in memory (pybreaker, used through `calling()` as the FACTS
require; never `call()` or `call_async`).
"""

from __future__ import annotations

import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pybreaker

from app.settings import BreakerSettings, PaymentSettings

# The provider-wide breaker is opened by the outage detector only, never by a streak of failures.
_NEVER = 2**31 - 1


@dataclass(frozen=True, slots=True)
class ProviderAccount:
    """Whose account at the payment provider a call uses. Today every tenant uses the platform's
    credentials, so the account is the tenant; when tenants bring their own credentials,
    `credentials_id` names them and becomes the breaker key (two tenants sharing one set of
    credentials then share one breaker, as they share the provider-side account)."""

    tenant_id: uuid.UUID
    credentials_id: str | None = None

    @classmethod
    def of_tenant(cls, tenant_id: uuid.UUID) -> ProviderAccount:
        return cls(tenant_id)

    @property
    def key(self) -> str:
        if self.credentials_id is not None:
            return f"credentials:{self.credentials_id}"
        return f"tenant:{self.tenant_id}"


class ProviderFailure(Exception):
    """Counts in the breakers: the provider did not answer properly (timeout, connection error,
    5xx)."""


def new_breaker(settings: BreakerSettings, name: str, fail_max: int | None = None) -> Any:
    return pybreaker.CircuitBreaker(
        fail_max=fail_max or settings.fail_max,
        reset_timeout=settings.reset_timeout_seconds,
        success_threshold=settings.success_threshold,
        # Only a provider failure counts: a decline or a refusal proves the provider answered.
        exclude=[lambda error: not isinstance(error, ProviderFailure)],
        throw_new_error_on_trip=False,
        name=name,
    )


def open_for(breaker: Any) -> float:
    """Seconds `breaker` still refuses calls (0: a call may pass, possibly as the trial)."""
    if breaker.current_state != pybreaker.STATE_OPEN:
        return 0.0
    opened_at = breaker._state_storage.opened_at
    if opened_at is None:
        return 0.0
    remaining: float = opened_at.timestamp() + breaker.reset_timeout - time.time()
    return max(0.0, remaining)


class PaymentBreakers:
    def __init__(
        self, settings: PaymentSettings, monotonic: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings.breaker
        self._max_accounts = settings.max_account_breakers
        outage = settings.outage
        self._min_accounts = outage.min_accounts
        self._window = outage.window_seconds
        self._monotonic = monotonic
        self.provider = new_breaker(
            BreakerSettings(
                fail_max=1,  # unused: see _NEVER
                reset_timeout_seconds=outage.reset_timeout_seconds,
                success_threshold=outage.success_threshold,
            ),
            "payments",
            fail_max=_NEVER,
        )
        self._accounts: OrderedDict[str, Any] = OrderedDict()  # LRU: oldest first
        self._failing: OrderedDict[str, float] = OrderedDict()  # account -> last failure
        self._proven: OrderedDict[str, None] = OrderedDict()  # accounts that once succeeded (LRU)
        self._last_success: float | None = None  # any account's, monotonic
        self.evicted = 0

    def for_account(self, account: ProviderAccount) -> Any:
        key = account.key
        breaker = self._accounts.get(key)
        if breaker is not None:
            self._accounts.move_to_end(key)
            return breaker
        if len(self._accounts) >= self._max_accounts:
            self._evict()
        breaker = self._accounts[key] = new_breaker(self._settings, f"payments:{key}")
        return breaker

    def _evict(self) -> None:
        """Drop the least recently used closed breaker (forgetting a closed one loses at most a
        short failure streak); only when every breaker is open or half-open, the least recently
        used of those (the bound is a hard one)."""
        victim = next(
            (k for k, b in self._accounts.items() if b.current_state == pybreaker.STATE_CLOSED),
            None,
        )
        if victim is None:
            victim = next(iter(self._accounts))
        del self._accounts[victim]
        self.evicted += 1

    def refuses(self, account: ProviderAccount) -> float:
        """Seconds the provider-wide breaker makes `account` wait without a call (0: go on).

        Open: everyone waits. Due for its trial (half-open, or open with the timeout elapsed):
        accounts with a failure within the window wait (their failure may be their own), so the
        trial is made by an account with no recent failure."""
        provider = self.provider
        if provider.current_state == pybreaker.STATE_CLOSED:
            return 0.0
        if wait := open_for(provider):
            return wait
        failed_at = self._failing.get(account.key)
        if failed_at is not None and self._monotonic() - failed_at <= self._window:
            return float(provider.reset_timeout)
        return 0.0

    def failed(self, account: ProviderAccount) -> None:
        """A counted provider failure on `account`: opens the provider-wide breaker when the
        accounts that failed within the window weigh enough and none succeeded in it."""
        now = self._monotonic()
        self._failing[account.key] = now
        self._failing.move_to_end(account.key)
        while self._failing:
            key, at = next(iter(self._failing.items()))
            if now - at <= self._window and len(self._failing) <= self._max_accounts:
                break
            del self._failing[key]
        # (Half-open: the failed trial call has already reopened it.)
        if self.provider.current_state == pybreaker.STATE_CLOSED and self._outage(now):
            self.provider.open()

    def _outage(self, now: float) -> bool:
        if self._last_success is not None and now - self._last_success <= self._window:
            return False  # someone got an answer: the provider is up
        weight = sum(1.0 if key in self._proven else 0.5 for key in self._failing)
        return weight >= self._min_accounts

    def succeeded(self, account: ProviderAccount) -> None:
        """The provider answered `account` (any answer but a counted failure)."""
        self._last_success = self._monotonic()
        key = account.key
        self._failing.pop(key, None)
        self._proven[key] = None
        self._proven.move_to_end(key)
        if len(self._proven) > self._max_accounts:
            self._proven.popitem(last=False)

    def account_states(self) -> dict[str, int]:
        """How many account breakers are in each state (for metrics: three labels, however
        many accounts)."""
        counts = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 0, pybreaker.STATE_OPEN: 0}
        for breaker in self._accounts.values():
            state = str(breaker.current_state)
            counts[state] = counts.get(state, 0) + 1
        return counts

    def __len__(self) -> int:
        return len(self._accounts)
