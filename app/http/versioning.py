"""Which API version serves a request, and its response in that version's shape.

Pure ASGI, inside the edge (whose renderer turns the errors raised here into problem+json) and
outside the hot routes (their responses are shaped too). Per request:

- the version: the `Storefront-Version` header (`?version=` on the OpenAPI document), else the
  tenant's pin, set by `pin_tenant` once the caller is authenticated (app/http/security.py),
  else the newest. An unknown name is 400 `api.version_unknown`.
- deprecations (`api.deprecations`, of a version or of one route): `Deprecation: @<unix>`
  (RFC 9745, a structured-field Date), `Sunset: <HTTP-date>` (RFC 8594) and
  `Link: <...>; rel="deprecation"` on every response; past the sunset (by the container's
  clock) the request is refused with 410 `api.version_sunset` / `api.route_sunset` before it
  reaches the route. Requests served a deprecated version are counted per tenant
  (`storefront_api_deprecated_requests_total`); every tenant's requests per version are summed
  for `storefront api usage`.
- the response: `Storefront-Version: <served>`; a 2xx JSON body of a route that changed since
  the served version is buffered and turned into that version's shape by the changes' downgrades
  (app/versions), encoded exactly as Starlette encodes JSON, so an old version's bytes are the
  bytes it always had.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import format_datetime
from typing import Any
from urllib.parse import parse_qs

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import DeprecationSettings
from app.versions import (
    NEWEST,
    ApiVersion,
    RouteSunset,
    VersionSunset,
    changes_since,
    downgrades,
    named,
)
from app.versions.deprecations import Deprecations

log = structlog.get_logger(__name__)
HEADER = "storefront-version"

Pins = Callable[[uuid.UUID], Awaitable[str | None]]
Counter = Callable[[str, uuid.UUID | None, bool], None]  # (version, tenant, deprecated)


def deprecation_headers(*entries: DeprecationSettings | None) -> list[tuple[bytes, bytes]]:
    """One `Deprecation` and one `Sunset` (the earliest, when both the version and the route
    are deprecated: each header is a single value) and a `Link` per entry."""
    found = [entry for entry in entries if entry is not None]
    if not found:
        return []
    since = min(entry.deprecated_at for entry in found)
    headers = [(b"deprecation", f"@{int(since.timestamp())}".encode())]
    sunsets = [entry.sunset_at for entry in found if entry.sunset_at is not None]
    if sunsets:
        headers.append((b"sunset", format_datetime(min(sunsets), usegmt=True).encode()))
    for link in dict.fromkeys(entry.link for entry in found):
        headers.append((b"link", f'<{link}>; rel="deprecation"'.encode()))
    return headers


SCOPE_KEY = "storefront.api_version"


@dataclass
class RequestVersion:
    explicit: ApiVersion | None
    served: ApiVersion
    pins: Pins
    deprecations: Deprecations
    counted: Counter
    route_entry: DeprecationSettings | None = None
    tenant_id: uuid.UUID | None = field(default=None)
    document: bool = False

    def headers(self) -> list[tuple[bytes, bytes]]:
        """What every response of the request carries (the edge adds them, so the responses
        it renders itself carry them too): the served version, and its deprecation and the
        route's, if any. The request is counted here, once (app/versions/usage.py)."""
        headers = [(b"storefront-version", self.served.name.encode())]
        entry = self.deprecations.of_version(self.served)
        self.counted(self.served.name, self.tenant_id, entry is not None)
        headers.extend(deprecation_headers(entry, self.route_entry))
        if self.document:  # the OpenAPI document differs by the version asked for
            headers.append((b"vary", b"Storefront-Version"))
        return headers


def served_version(scope: Scope) -> ApiVersion:
    """The version serving the request of `scope` (the newest outside ApiVersioning)."""
    request: RequestVersion | None = scope.get(SCOPE_KEY)
    return request.served if request is not None else NEWEST


async def pin_tenant(scope: Scope, tenant_id: uuid.UUID) -> None:
    """The caller is `tenant_id`'s: without a header, the tenant's pin serves the request
    (410 when that version is past its sunset)."""
    request: RequestVersion | None = scope.get(SCOPE_KEY)
    if request is None:
        return
    request.tenant_id = tenant_id
    if request.explicit is not None:
        return
    pinned = await request.pins(tenant_id)
    version = NEWEST
    if pinned:
        try:
            version = named(pinned)
        except Exception:
            log.warning("api.unknown_pin", tenant=str(tenant_id), version=pinned)
    request.served = version  # a 410 below still says which version it refused
    request.deprecations.refuse_sunset(request.deprecations.of_version(version), VersionSunset)


class ApiVersioning:
    def __init__(
        self,
        app: ASGIApp,
        pins: Pins,
        deprecations: Deprecations,
        counted: Counter,
        openapi_url: str | None,
    ) -> None:
        self.app = app
        self.pins = pins
        self.deprecations = deprecations
        self.counted = counted
        self.openapi_url = openapi_url

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        name = _header(scope)
        document = scope["path"] == self.openapi_url
        if not name and document:
            name = _query(scope, "version")
        explicit = named(name) if name else None
        route_entry = self.deprecations.of_route(scope["method"], scope["path"])
        request = RequestVersion(
            explicit,
            explicit or NEWEST,
            self.pins,
            self.deprecations,
            self.counted,
            route_entry,
            document=document,
        )
        scope[SCOPE_KEY] = request
        if explicit is not None:
            self.deprecations.refuse_sunset(self.deprecations.of_version(explicit), VersionSunset)
        self.deprecations.refuse_sunset(route_entry, RouteSunset)
        held: Message | None = None
        chunks: list[bytes] = []
        shape: list[Callable[[Any], Any]] = []

        async def shaped(message: Message) -> None:
            nonlocal held
            if message["type"] == "http.response.start":
                served = request.served
                if served is not NEWEST and 200 <= message["status"] < 300:
                    route = scope.get("route")
                    if scope["path"] == self.openapi_url:
                        shape.append(lambda document: openapi_of(served, document))
                    elif route is not None:
                        shape.extend(downgrades(served, scope["method"], route.path))
                    if shape and _is_json(list(message.get("headers", ()))):
                        held = message
                        return
                    shape.clear()
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                body = json.loads(b"".join(chunks))
                for downgrade in shape:
                    body = downgrade(body)
                content = _encode(body)
                held["headers"] = [
                    (k, v) for k, v in held["headers"] if k.lower() != b"content-length"
                ] + [(b"content-length", str(len(content)).encode())]
                await send(held)
                message = {"type": "http.response.body", "body": content, "more_body": False}
            await send(message)

        await self.app(scope, receive, shaped)


def openapi_of(version: ApiVersion, newest: dict[str, Any]) -> dict[str, Any]:
    """`version`'s OpenAPI document, from the newest one."""
    for change in changes_since(version):
        change.downgrade_openapi(newest)
    return newest


def _encode(body: Any) -> bytes:
    """As starlette.responses.JSONResponse renders (FastAPI's responses included)."""
    return json.dumps(
        body, ensure_ascii=False, allow_nan=False, indent=None, separators=(",", ":")
    ).encode("utf-8")


def _header(scope: Scope) -> str | None:
    for key, value in scope["headers"]:
        if key == b"storefront-version":
            return str(value.decode("latin-1").strip())
    return None


def _query(scope: Scope, name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else None


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers
    )
