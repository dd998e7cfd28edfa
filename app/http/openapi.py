"""The OpenAPI document, made to say exactly what the server does.

FastAPI generates the operations from the routes; this module then states what the edge adds to
every operation and FastAPI cannot see: problem+json (the `Problem` schema) on every error
status, the statuses the edge itself can answer anywhere (400 malformed routing headers,
408/413 bodies, 500, 503 the door or the body budget), every response header, the request
headers a route enforces although it reads them as optional (to answer 428 rather than 422),
and the public operations' empty security. One table per concern, below;
tests/api/test_openapi.py keeps it true.
"""

from __future__ import annotations

from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.http.middleware import UNGATED  # probes and operator paths: no tenant credential
from app.versions import VERSIONS

PROBLEM = "application/problem+json"
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def operation_id(route: APIRoute) -> str:
    """`create_product`, `get_order`: the route function's name (unique, checked by a test)."""
    return route.name


TAGS = [
    {"name": "catalog", "description": "Products and their stock."},
    {"name": "orders", "description": "Idempotent order placement, reads and cancellation."},
    {"name": "identity", "description": "Log-in, tokens, users and API keys."},
    {"name": "reports", "description": "Read models fed by events (they trail the orders)."},
    {"name": "features", "description": "Feature flags as evaluated for the caller's tenant."},
    {"name": "tenants", "description": "Self-service sign-up."},
    {"name": "webhooks", "description": "The tenant's webhook signing secret."},
    {"name": "ops", "description": "Health probes (public) and operator endpoints (token)."},
]

_HEADERS_SCHEMA_TOKEN = {
    "type": "string",
    "maxLength": 17,
    "pattern": "^[0-9A-Fa-f]{1,8}/[0-9A-Fa-f]{1,8}$",
    "example": "0/3000060",
}

# name -> (schema, description); referenced from components.headers.
_HEADERS: dict[str, tuple[dict[str, Any], str]] = {
    "X-Request-ID": (
        {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$", "maxLength": 128},
        "The request's id: the caller's own `X-Request-ID` when it is valid, else a new one."
        " Quote it when reporting a problem; every log line of the request carries it.",
    ),
    "ETag": (
        {"type": "string", "pattern": '^"v[0-9]+"$', "example": '"v3"'},
        "The representation's version; send it as `If-Match` to update, `If-None-Match` to"
        " revalidate.",
    ),
    "Location": (
        {"type": "string", "format": "uri-reference"},
        "The created resource (201), or where a redirect sends the browser (302).",
    ),
    "Set-Cookie": (
        {"type": "string"},
        "`sf_sso`: binds the SSO login to this browser (HttpOnly, SameSite=Lax, path"
        " /v1/auth/sso, Secure when sso.redirect_uri is https).",
    ),
    "X-Consistency-Token": (
        _HEADERS_SCHEMA_TOKEN,
        "Set when the request committed: send it back as `X-Consistency-Token` on reads to be"
        " served by a database server that has applied this write.",
    ),
    "Retry-After": (
        {"type": "integer", "minimum": 0},
        "Seconds to wait before retrying.",
    ),
    "Idempotent-Replayed": (
        {"type": "string", "enum": ["true"]},
        "Present when this is the stored answer to an earlier request with the same"
        " `Idempotency-Key`.",
    ),
    "RateLimit": (
        {"type": "string", "example": '"tenant";r=97;t=42'},
        "Remaining quota per policy (IETF draft-ietf-httpapi-ratelimit-headers), when rate"
        " limits are enabled and the request was counted (a bad credential is refused before"
        " its tenant's quota is counted).",
    ),
    "RateLimit-Policy": (
        {"type": "string", "example": '"tenant";q=100;w=60'},
        "The quotas this request was counted on, when rate limits are enabled.",
    ),
    "Cache-Control": (
        {"type": "string", "enum": ["no-store"]},
        "The response carries a secret: never store it (RFC 6749 5.1).",
    ),
    "Pragma": ({"type": "string", "enum": ["no-cache"]}, "The same, for HTTP/1.0 caches."),
    "WWW-Authenticate": (
        {"type": "string"},
        "The credentials this API accepts.",
    ),
}

# Headers every response may carry, written once under components.headers and referenced (an
# optional header needs no `required`, so a reference serves): the API version that served the
# request, and that version's or route's deprecation (app/http/versioning.py).
_VERSION_HEADERS: dict[str, dict[str, Any]] = {
    "Storefront-Version": {
        "description": "The API version that served the request (docs/changelog.md): the"
        " request's `Storefront-Version`, else the tenant's pin, else the newest. Absent only"
        " on a request refused before a version was chosen: an unknown version, and the edge's"
        " own refusals (400 for a malformed X-Consistency-Token, X-Read-Consistency or"
        " Content-Length; 408, 413 and 503 for a slow or oversized body or a full server).",
        "schema": {"type": "string", "enum": [v.name for v in VERSIONS]},
    },
    "Deprecation": {
        "description": "RFC 9745: the served version or this route is deprecated since this"
        " moment (a structured-field Date, `@<unix seconds>`).",
        "schema": {
            "type": "string",
            "maxLength": 17,
            "pattern": "^@-?[0-9]{1,15}$",
            "example": "@1767225600",
        },
    },
    "Sunset": {
        "description": "RFC 8594: from this moment (an HTTP-date) the deprecated version or route"
        " answers 410 `api.version_sunset` / `api.route_sunset`.",
        "schema": {
            "type": "string",
            "maxLength": 29,
            "pattern": "^[A-Z][a-z]{2}, [0-9]{2} [A-Z][a-z]{2} [0-9]{4} [0-9:]{8} GMT$",
            "example": "Wed, 01 Jul 2026 00:00:00 GMT",
        },
    },
    "Link": {
        "description": 'With a deprecation: `<url>; rel="deprecation"`, what to read and move to.',
        "schema": {"type": "string", "maxLength": 2048, "pattern": '^<[^>]+>; rel="deprecation"$'},
    },
}
_VERSION_PARAMETER = {
    "name": "Storefront-Version",
    "in": "header",
    "required": False,
    "description": "The API version to serve this request with (overrides the tenant's pin;"
    " 400 `api.version_unknown` for a name that is not a version).",
    "schema": {"type": "string", "enum": [v.name for v in VERSIONS]},
}

_NO_STORE = [("Cache-Control", True), ("Pragma", True)]

# (header, required) that specific operations send, by status ("2xx": every success).
_OPERATION_HEADERS: dict[str, dict[str, list[tuple[str, bool]]]] = {
    "create_product": {"201": [("ETag", True), ("Location", True)]},
    "get_product": {"200": [("ETag", True)], "304": [("ETag", True)]},
    "update_product": {"200": [("ETag", True)]},
    "adjust_stock": {"201": [("ETag", True)]},
    "place_order": {
        "201": [("Location", True), ("Idempotent-Replayed", False)],
        "402": [("Idempotent-Replayed", False)],
        "409": [("Idempotent-Replayed", False)],
        "422": [("Idempotent-Replayed", False)],
    },
    # A secret in the body (app/http/schemas.py NO_STORE). No Location on created users, keys
    # and tenants: none has a URL of its own to GET (they are read through the lists, /v1/me).
    "login": {"200": _NO_STORE},
    "refresh_token": {"200": _NO_STORE},
    "create_api_key": {"201": _NO_STORE},
    "rotate_api_key": {"201": _NO_STORE},
    "generate_webhook_secret": {"201": _NO_STORE},
    "start_sso": {"302": [("Location", True), ("Set-Cookie", True), *_NO_STORE]},
    "sso_callback": {"200": _NO_STORE},
}

# Request headers a route reads as optional (so a missing one is its own 428/400, not a 422)
# but always requires.
_REQUIRED_REQUEST_HEADERS = {
    "place_order": {"Idempotency-Key"},
    "update_product": {"If-Match"},
}

# Header parameters in their canonical spelling (FastAPI declares them lower-case).
_CANONICAL = {
    "if-match": "If-Match",
    "if-none-match": "If-None-Match",
    "idempotency-key": "Idempotency-Key",
}

# Read-routing headers, which the edge middleware reads on every request (no per-route cost):
# declared on every tenant read.
READ_HEADERS = [
    {
        "name": "X-Consistency-Token",
        "in": "header",
        "required": False,
        "description": "Read your writes: the token a write returned; the read is served by a"
        " database server that has applied it (400 `consistency.invalid_token` when malformed;"
        " an empty value is no token).",
        "schema": _HEADERS_SCHEMA_TOKEN,
    },
    {
        "name": "X-Read-Consistency",
        "in": "header",
        "required": False,
        "description": "`strong` reads from the primary (400 `consistency.invalid_mode` for any"
        " other value).",
        "schema": {"$ref": "#/components/schemas/ReadConsistency"},
    },
]
# One named enum, so generated clients get one `ReadConsistency` type, not one per operation.
_READ_CONSISTENCY = {"type": "string", "enum": ["strong"], "title": "ReadConsistency"}

# Operations anyone may call (no credential): declared with an empty security requirement.
PUBLIC = {"login", "refresh_token", "logout", "sign_up", "get_liveness", "get_readiness"}
PUBLIC |= {"start_sso", "sso_callback"}  # the browser's side of an SSO login

# Public operations counted per client address (app/http/ratelimit.py limited_by_address).
_LIMITED_BY_ADDRESS = {"login", "refresh_token", "logout", "sign_up", "start_sso", "sso_callback"}

# Operations whose 503 has a body of their own besides the edge's problem.
_OWN_503 = {"get_readiness"}
_WRITES = {"post", "put", "patch", "delete"}


def install_openapi(app: FastAPI) -> None:
    """Replace `app.openapi` by FastAPI's document refined as above, built once."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = refine(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def refine(document: dict[str, Any]) -> dict[str, Any]:
    components = document.setdefault("components", {})
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            _refine_operation(path, method, operation)
    components.setdefault("headers", {}).update(_VERSION_HEADERS)
    components.setdefault("parameters", {})["StorefrontVersion"] = _VERSION_PARAMETER
    schemas = components.setdefault("schemas", {})
    schemas["ReadConsistency"] = _READ_CONSISTENCY
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    _formats(document)
    return document


def _refine_operation(path: str, method: str, operation: dict[str, Any]) -> None:
    name = operation["operationId"]
    public = name in PUBLIC
    if public:
        operation["security"] = []
    tenant_scoped = bool(operation.get("security")) and not path.startswith(UNGATED)
    counted = tenant_scoped or name in _LIMITED_BY_ADDRESS
    if tenant_scoped and method == "get":
        operation.setdefault("parameters", []).extend(dict(header) for header in READ_HEADERS)
    for parameter in operation.get("parameters", ()):
        # A query parameter or header is absent or a string: never null.
        parameter["schema"] = _not_null(parameter["schema"])
        if parameter["in"] == "header":
            parameter["name"] = _CANONICAL.get(parameter["name"], parameter["name"])
            if parameter["name"] in _REQUIRED_REQUEST_HEADERS.get(name, ()):
                parameter["required"] = True
    operation.setdefault("parameters", []).append(
        {"$ref": "#/components/parameters/StorefrontVersion"}
    )
    responses = operation["responses"]
    # Any request may carry a body (read, within its deadline and cap, before routing) and be
    # refused for the process's body budget: 400/408/413/503 can come from the edge anywhere.
    for status in (400, 408, 413, 500, 503):
        responses.setdefault(str(status), {})
    for status, response in responses.items():
        code = int(status)
        headers = response.setdefault("headers", {})
        headers["X-Request-ID"] = _header("X-Request-ID", required=True)
        for versioned in _VERSION_HEADERS:
            headers[versioned] = {"$ref": f"#/components/headers/{versioned}"}
        if code >= 400:
            # The readiness probe's own 503 is its JSON body; the edge's is a problem.
            own = response.get("content", {}).get("application/json") if name in _OWN_503 else None
            response["description"] = _describe(code, response.get("description"))
            response["content"] = {PROBLEM: {"schema": _PROBLEM_REF}}
            if own is not None:
                response["content"] = {"application/json": own, **response["content"]}
            if code in (429, 503):
                headers["Retry-After"] = _header("Retry-After", required=own is None)
            if code == 401:
                headers["WWW-Authenticate"] = _header("WWW-Authenticate", required=True)
        if 200 <= code < 300 and method in _WRITES:
            headers["X-Consistency-Token"] = _header("X-Consistency-Token", required=False)
        if counted:
            for limit in ("RateLimit", "RateLimit-Policy"):
                headers[limit] = _header(limit, required=False)
        for header, required in _OPERATION_HEADERS.get(name, {}).get(status, ()):
            headers[header] = _header(header, required=required)


def _not_null(schema: dict[str, Any]) -> dict[str, Any]:
    """`anyOf: [X, null]` (FastAPI's optional parameter) -> X, for a header that is required."""
    options = [option for option in schema.get("anyOf", ()) if option != {"type": "null"}]
    if len(options) != 1:
        return schema
    rest = {key: value for key, value in schema.items() if key != "anyOf"}
    return {**options[0], **rest}


def _header(name: str, *, required: bool) -> dict[str, Any]:
    # Written out, not referenced: an OpenAPI 3.1 reference cannot carry `required`.
    schema, description = _HEADERS[name]
    return {"description": description, "required": required, "schema": schema}


_FORMAT_LENGTHS = {"uuid": 36, "date": 10}


def _formats(node: Any) -> None:
    """Every integer this API reads or writes fits PostgreSQL's bigint: say `int64`, so that
    generated clients pick a wide enough type. A UUID or a date has a length: say it."""
    if isinstance(node, dict):
        if node.get("type") == "integer":
            node.setdefault("format", "int64")
        elif node.get("type") == "string" and node.get("format") in _FORMAT_LENGTHS:
            node.setdefault("maxLength", _FORMAT_LENGTHS[node["format"]])
        for value in node.values():
            _formats(value)
    elif isinstance(node, list):
        for value in node:
            _formats(value)


def _describe(status: int, current: str | None) -> str:
    phrase = HTTPStatus(status).phrase
    if current and current not in ("Validation Error", "Successful Response", phrase):
        return current
    return f"{phrase} (problem+json: see `code`)"
