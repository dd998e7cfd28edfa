"""Rate limits at the HTTP edge: the quota dependencies and the IETF headers.

Headers (draft-ietf-httpapi-ratelimit-headers), as Structured Field lists built with `http-sfv`:
`RateLimit-Policy: "tenant";q=100;w=60` (every quota the request was counted on) and
`RateLimit: "tenant";r=42;t=17` (what is left, seconds until the window frees quota; left out
for a quota whose store failed and admitted the request unchecked). They are on every response of
a limited endpoint, the 429 included: the dependency records the verdicts in the ASGI scope and
the edge middleware adds the headers when the response starts (so routes that build their own
Response carry them too).
"""

from __future__ import annotations

from collections.abc import Awaitable, MutableMapping, Sequence
from typing import Any

from fastapi import Request
from http_sfv.item import Item
from http_sfv.list import List

from app.http.client_address import throttle_bucket
from app.http.di import Provide, inject
from app.ratelimit.errors import QuotaExceeded
from app.ratelimit.limiter import Quota, Verdict
from app.ratelimit.quotas import AddressQuotas, TenantQuotas

SCOPE_KEY = "storefront.ratelimit"
_POLICIES: dict[tuple[Quota, ...], bytes] = {}


def record(scope: MutableMapping[str, Any], verdicts: Sequence[Verdict]) -> None:
    if verdicts:
        scope[SCOPE_KEY] = tuple(verdicts)


def response_headers(verdicts: Sequence[Verdict]) -> list[tuple[bytes, bytes]]:
    quotas = tuple(v.quota for v in verdicts)
    policy = _POLICIES.get(quotas)
    if policy is None:
        listed = List()
        for quota in quotas:
            item = Item(quota.name)
            item.params["q"] = quota.limit
            item.params["w"] = quota.window_seconds
            listed.append(item)
        policy = str(listed).encode()
        if len(_POLICIES) < 4096:  # bounded: plans x overrides in use
            _POLICIES[quotas] = policy
    headers = [(b"ratelimit-policy", policy)]
    current = [_remaining(v) for v in verdicts if v.remaining is not None]
    if current:
        headers.append((b"ratelimit", ", ".join(current).encode()))
    return headers


_NAMES: dict[str, str] = {}
_SF_INTEGER_MAX = 999_999_999_999_999  # RFC 8941 3.3.1: at most 15 digits


def _remaining(verdict: Verdict) -> str:
    """One `RateLimit` list member, `"name";r=R;t=T`: the name serialized by http_sfv once per
    quota name, the two integers as RFC 8941 writes them (decimal digits), checked against
    http_sfv's own output in tests/unit/test_rate_limiter.py."""
    remaining, reset = verdict.remaining, verdict.reset_seconds
    name = verdict.quota.name
    prefix = _NAMES.get(name)
    if prefix is None:
        prefix = str(Item(name))
        if len(_NAMES) < 4096:
            _NAMES[name] = prefix
    assert remaining is not None
    if 0 <= remaining <= _SF_INTEGER_MAX and 0 <= reset <= _SF_INTEGER_MAX:
        return f"{prefix};r={remaining};t={reset}"
    item = Item(name)
    item.params["r"], item.params["t"] = remaining, reset
    return str(item)


async def admit_tenant(
    request: Request, quotas: TenantQuotas, tenant_id: Any, api_key_id: Any
) -> None:
    await _counted(request, quotas.admit(tenant_id, api_key_id))


@inject
async def limited_by_address(
    request: Request, quotas: AddressQuotas = Provide["address_quotas"]
) -> None:
    """Sign-up, token and refresh: counted per client address (the edge has applied trusted
    proxies to request.client)."""
    client = request.client
    await _counted(request, quotas.admit(throttle_bucket(client.host) if client else "unknown"))


async def _counted(request: Request, admit: Awaitable[tuple[Verdict, ...]]) -> None:
    """Await the quota check and record its verdicts for the headers, the refusal's too."""
    try:
        verdicts = await admit
    except QuotaExceeded as refused:
        record(request.scope, refused.verdicts)
        raise
    record(request.scope, verdicts)
