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
    current = []
    for verdict in verdicts:
        if verdict.remaining is None:
            continue
        item = Item(verdict.quota.name)
        item.params["r"] = verdict.remaining
        item.params["t"] = verdict.reset_seconds
        current.append(item)
    if current:
        # http_sfv's List serializer on a plain list of its Items: the same bytes, without
        # iterating a UserList on every response (measured: docs/performance.md).
        headers.append((b"ratelimit", List.__str__(current).encode()))  # type: ignore[arg-type]
    return headers


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
