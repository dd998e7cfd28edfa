"""The quotas the API enforces, on one `RateLimiter`.

- **Tenants** (`TenantQuotas`): from the tenant's effective policy (app/tenancy: defaults <
  plan < override < emergency): `requests_per_window` per `window_seconds`, counted per tenant
  (policy name "tenant") or, when the policy says `per_api_key`, per API key ("api-key"; user
  tokens still count on the tenant). When `burst` > 0, also `burst` per second ("burst"), so a
  spike cannot spend the whole window at once. A quota of 0 refuses every request.
- **Client addresses** (`AddressQuotas`): sign-up, token and refresh together, per address
  (IPv6 per /64: app/http/client_address.py), `rate_limits.anonymous` ("address").

A refused request has still counted on the quotas checked before the one that refused it.
The verdicts go back to the HTTP edge, which turns them into `RateLimit-Policy`/`RateLimit`
headers; a refusal raises QuotaExceeded carrying them.
"""

from __future__ import annotations

import uuid

from app.ratelimit.errors import QuotaExceeded
from app.ratelimit.limiter import Quota, RateLimiter, Verdict
from app.settings import AddressQuotaSettings
from app.tenancy.policies import TenantPolicies
from app.tenancy.policy import TenantPolicy


async def _all(limiter: RateLimiter, checks: list[tuple[str, Quota]]) -> tuple[Verdict, ...]:
    verdicts: list[Verdict] = []
    for key, quota in checks:
        verdict = await limiter.acquire(key, quota)
        verdicts.append(verdict)
        if not verdict.allowed:
            raise QuotaExceeded(tuple(verdicts))
    return tuple(verdicts)


class TenantQuotas:
    def __init__(self, limiter: RateLimiter, policies: TenantPolicies, enabled: bool) -> None:
        self._limiter = limiter
        self._policies = policies
        self.enabled = enabled
        self._checks_cache: dict[
            tuple[uuid.UUID, uuid.UUID | None], tuple[TenantPolicy, list[tuple[str, Quota]]]
        ] = {}

    @property
    def shared(self) -> bool:
        """True when every process counts in the same store (Redis)."""
        return self._limiter.shared

    async def admit(
        self, tenant_id: uuid.UUID, api_key_id: uuid.UUID | None
    ) -> tuple[Verdict, ...]:
        """Count one request of the tenant; QuotaExceeded when over a quota."""
        if not self.enabled:
            return ()
        policy = self._policies.cached(tenant_id) or await self._policies.policy_for(tenant_id)
        per_key = policy.per_api_key and api_key_id is not None
        checks = self._checks(tenant_id, policy, api_key_id if per_key else None)
        return await _all(self._limiter, checks)

    def _checks(
        self, tenant_id: uuid.UUID, policy: TenantPolicy, api_key_id: uuid.UUID | None
    ) -> list[tuple[str, Quota]]:
        """The (key, quota) pairs of one request, built once per tenant policy (a policy object
        is replaced when it changes) and API key: the hot path allocates nothing."""
        cache_key = (tenant_id, api_key_id)
        cached = self._checks_cache.get(cache_key)
        if cached is not None and cached[0] is policy:
            return cached[1]
        if api_key_id is not None:
            key, name = f"key:{api_key_id}", "api-key"
        else:
            key, name = f"tenant:{tenant_id}", "tenant"
        checks = [(key, Quota(name, policy.requests_per_window, policy.window_seconds))]
        if policy.burst > 0:
            checks.append((f"tenant:{tenant_id}", Quota("burst", policy.burst, 1)))
        if len(self._checks_cache) >= 50_000:  # bounded: tenants x keys in use
            self._checks_cache.clear()
        self._checks_cache[cache_key] = (policy, checks)
        return checks

    async def usage(self, tenant_id: uuid.UUID) -> list[Verdict]:
        """The tenant's windows as the store sees them (no request counted): for operators. With
        `per_api_key` the tenant window counts the users' tokens only (keys count on their own)."""
        policy = await self._policies.policy_for(tenant_id)
        checks = self._checks(tenant_id, policy, None)
        return [await self._limiter.peek(key, quota) for key, quota in checks]


class AddressQuotas:
    def __init__(self, limiter: RateLimiter, settings: AddressQuotaSettings, enabled: bool) -> None:
        self._limiter = limiter
        self._quota = Quota("address", settings.requests_per_window, settings.window_seconds)
        self.enabled = enabled

    async def admit(self, address: str) -> tuple[Verdict, ...]:
        if not self.enabled:
            return ()
        return await _all(self._limiter, [(f"address:{address}", self._quota)])
