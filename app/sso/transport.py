"""The HTTP client to identity providers. A tenant's owner names the issuer, so every request
it causes is treated as hostile-controlled (server-side request forgery):

- connections go only to globally reachable addresses, checked when the connection is made
  and pinned to the checked address (httpx-secure: a name that resolves to 127.0.0.1,
  169.254.169.254 or 10.x is refused, and so is DNS rebinding between check and connect);
  `sso.allow_private_addresses` lifts this for local test providers only;
- no redirects are followed (a provider's endpoints are the URLs its discovery document
  names), no proxy or `.netrc` from the environment is used;
- the connection pool is shared but sized by `sso.max_connections`; each request is bounded in
  total time and size by the caller (app/sso/oidc.py).
"""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
from httpx_secure import httpx_ssrf_protection

from app.settings import SsoSettings

# How long an address check is reused for a host name (new connections only).
_DNS_CACHE_SECONDS = 60.0


def _any_address(hostname: str, address: ipaddress.IPv4Address | ipaddress.IPv6Address,
                 port: int) -> bool:  # fmt: skip
    return True


def open_sso_http(settings: SsoSettings) -> httpx.AsyncClient:
    client = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        follow_redirects=False,
        trust_env=False,
        limits=httpx.Limits(
            max_connections=settings.max_connections,
            max_keepalive_connections=min(20, settings.max_connections),
        ),
        headers={"User-Agent": "storefront-sso"},
    )
    if settings.allow_private_addresses:
        return httpx_ssrf_protection(
            client,
            check_globally_reachable=False,
            custom_validator=_any_address,
            dns_cache_ttl=_DNS_CACHE_SECONDS,
        )
    return httpx_ssrf_protection(client, dns_cache_ttl=_DNS_CACHE_SECONDS)


def address_allowed(host: str, settings: SsoSettings) -> bool:
    """Whether a host given as an IP literal may be a provider's (a name is checked when it is
    connected to: what it resolves to can change)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return True
    return settings.allow_private_addresses or address.is_global


async def sso_http_lifecycle(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()
