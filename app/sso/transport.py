"""The HTTP client to identity providers: httpx with timeouts, no redirects followed (a
provider's endpoints are the URLs its discovery document names, nothing else)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from app.settings import SsoSettings


def open_sso_http(settings: SsoSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(settings.http_timeout_seconds),
        follow_redirects=False,
        limits=httpx.Limits(max_connections=20, max_keepalive_connections=5),
        headers={"User-Agent": "storefront-sso"},
    )


async def sso_http_lifecycle(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()
