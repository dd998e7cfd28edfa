"""The one place errors become HTTP: RFC 9457 problem+json with a stable `code`.

Unexpected exceptions become a 500 problem without internals; database unavailability that
escaped a unit of work still becomes a 503, never a 500.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse
from starlette.routing import Match

from app.core.errors import (
    BadGateway,
    Conflict,
    DatabaseUnavailable,
    DomainError,
    Forbidden,
    Gone,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PaymentRequired,
    PreconditionFailed,
    PreconditionRequired,
    RequestTimeout,
    ServiceUnavailable,
    TooManyRequests,
    Unauthenticated,
    Unprocessable,
)
from app.db.errors import is_unavailable
from app.http.request_id import current_request_id
from app.ratelimit.errors import QuotaExceeded

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
_HTTP_CODES = {
    400: "request.bad",
    401: "auth.unauthenticated",
    403: "auth.forbidden",
    404: "route.not_found",
    405: "request.method_not_allowed",
    406: "request.not_acceptable",
    413: "request.too_large",
    415: "request.unsupported_media_type",
}


def problem(
    request: HTTPConnection,
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    errors: list[dict[str, Any]] | None = None,
    type_uri: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": type_uri or f"https://storefront.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "code": code,
        "request_id": current_request_id(),
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


# The one mapping of domain error kinds to HTTP statuses (most specific first).
_STATUS: tuple[tuple[type[DomainError], int], ...] = (
    (InvalidRequest, 400),
    (Unauthenticated, 401),
    (PaymentRequired, 402),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (RequestTimeout, 408),
    (Gone, 410),
    (PreconditionFailed, 412),
    (PayloadTooLarge, 413),
    (Unprocessable, 422),
    (PreconditionRequired, 428),
    (TooManyRequests, 429),
    (BadGateway, 502),
    (ServiceUnavailable, 503),
)


# Registered problem types (IANA HTTP Problem Types) used instead of our own URI.
_REGISTERED_TYPES: tuple[tuple[type[DomainError], str], ...] = (
    (QuotaExceeded, "https://iana.org/assignments/http-problem-types#quota-exceeded"),
)


def status_of(error: DomainError) -> int:
    return next((status for kind, status in _STATUS if isinstance(error, kind)), 400)


async def render_domain(request: HTTPConnection, error: Exception) -> JSONResponse:
    """Also for a WebSocket refused before its upgrade (app/http/websocket.py)."""
    assert isinstance(error, DomainError)
    status = status_of(error)
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    if status == 401:
        headers["WWW-Authenticate"] = 'ApiKey header="X-API-Key", Bearer'
    registered = next((uri for kind, uri in _REGISTERED_TYPES if isinstance(error, kind)), None)
    return problem(
        request,
        status,
        error.code,
        error.title,
        error.detail,
        headers=headers or None,
        type_uri=registered,
    )


async def _validation(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    issues = [
        {"loc": list(item["loc"]), "msg": item["msg"], "type": item["type"]}
        for item in error.errors()
    ]
    return problem(
        request,
        422,
        "request.invalid",
        "Invalid request",
        "the request does not match the schema; see errors",
        errors=issues,
    )


async def render_http(request: Request, error: Exception) -> JSONResponse:
    """Starlette's and FastAPI's HTTPException: from FastAPI's routes (the app's handler) and
    from hot routes (app/http/hot.py; the edge middleware calls this)."""
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, f"http.{error.status_code}")
    title = str(error.detail) if error.detail else "Error"
    headers = error.headers
    if error.status_code == 405:
        # Inside a mount (the docs assets) no app route matches the rewritten scope: the
        # mount's own Allow stands there.
        allow = allowed_methods(request)
        if allow:
            headers = {"Allow": allow}
    return problem(request, error.status_code, code, title, str(error.detail), headers=headers)


# HEAD is implied by GET; OPTIONS is not served (no CORS here).
_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method some route serves at this path (Starlette's 405 names only the first route
    that matched the path, and FastAPI makes one route per method). Only on a 405: cheap enough."""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    )


async def render_unexpected(request: Request, error: Exception) -> JSONResponse:
    """Called by the edge middleware, so even a 500 carries the request id."""
    if is_unavailable(error):
        return await render_domain(request, DatabaseUnavailable("the database is unavailable"))
    route = request.scope.get("route")
    log.error(
        "http.unhandled_exception",
        route=getattr(route, "path", "unmatched"),
        exc_info=error,
    )
    return problem(
        request, 500, "internal", "Internal server error", "an unexpected error occurred"
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, render_domain)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, render_http)
