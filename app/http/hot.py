"""Hot routes: the most frequent requests, served without FastAPI's per-request machinery.

FastAPI's routing and dependency solving cost about as much CPU as everything a product read
does (docs/performance.md, issue 11): matching every route in turn, walking the dependency tree,
validating each parameter through pydantic, an exit stack per request. A hot route keeps its
FastAPI declaration (the OpenAPI document, validation errors, every request the fast path does
not take) and adds a plain handler for its well-formed common case:

    HotRoute(router, "GET", "/{product_id}", get_product_hot, product_id=UUID)

The path parameters are matched by the given patterns (canonical forms only); a request whose
path or method does not match goes on to FastAPI exactly as before, so anything unusual gets
FastAPI's validation and its problem+json. The handler is called with the Starlette request and
the matched parameters. It answers, or returns None to decline before it has done anything
(no authentication, no quota counted): the request then goes on to FastAPI, with its body
replayed (a POST handler declines a body it cannot validate, so FastAPI's 422 is the one
clients see). It runs the same use case, authentication and quota as the FastAPI endpoint
(they share one function each). The domain errors and HTTPExceptions (Starlette's or
FastAPI's) it raises are rendered by the edge middleware with the same renderers the app's
exception handlers use (same status, problem+json, code and headers), and
`scope["route"]` is the FastAPI route, so metrics and the access log name the same template.

`app.dependency_overrides`: while it holds any override, every request goes to FastAPI. A hot
handler solves no FastAPI dependencies, so it cannot honour one; the rule is checked per request
(one dict truth test), so an override set or cleared mid-test applies at once. It deliberately
does not ask whether the override touches this route's dependencies (that means walking the
route's dependency tree, sub-dependencies included): production sets no overrides, so the hot
path costs nothing more there. Overrides of container providers (`container.x.override(...)`)
need none of this: the handler resolves its services from the container as the endpoint does.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, APIRouter
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
_PARAMETER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

Handler = Callable[..., Awaitable[Response | None]]


class HotRoute:
    def __init__(
        self, router: APIRouter, method: str, path: str, handler: Handler, **patterns: str
    ) -> None:
        path = router.prefix + path  # the router is included without a prefix of its own
        names = _PARAMETER.findall(path)
        if sorted(names) != sorted(patterns):
            raise ValueError(f"{path}: give a pattern for each of {names}, no more")
        self.method = method
        self.path = path
        self.handler = handler
        pieces, end = [], 0
        for match in _PARAMETER.finditer(path):
            pieces += [
                re.escape(path[end : match.start()]),
                f"(?P<{match[1]}>{patterns[match[1]]})",
            ]
            end = match.end()
        self.pattern = re.compile("".join([*pieces, re.escape(path[end:])]))
        self.route = self._declared(router.routes)

    def _declared(self, routes: Iterable[Any]) -> APIRoute:
        """The FastAPI route this one is the fast path of (declared before it)."""
        for route in routes:
            if (
                isinstance(route, APIRoute)
                and route.path == self.path
                and self.method in (route.methods or ())
            ):
                return route
        raise LookupError(f"no FastAPI route {self.method} {self.path} to take the fast path of")


class HotRoutes:
    """ASGI middleware, innermost (inside the edge): a request that matches a hot route is
    answered by its handler; every other request (and every request while `fastapi` has a
    dependency override) goes on to FastAPI."""

    def __init__(self, app: ASGIApp, routes: Sequence[HotRoute], fastapi: FastAPI) -> None:
        self.app = app
        self.routes = routes
        self.fastapi = fastapi  # read per request: tests may replace its overrides dict

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.fastapi.dependency_overrides:
            path = _route_path(scope)
            for hot in self.routes:
                if scope["method"] == hot.method and (match := hot.pattern.fullmatch(path)):
                    params = match.groupdict()
                    scope["route"], scope["path_params"] = hot.route, params
                    read: list[bytes] = []
                    request = Request(scope, _recording(receive, read))
                    response = await hot.handler(request, **params)
                    if response is not None:
                        await response(scope, receive, send)
                        return
                    del scope["route"], scope["path_params"]  # FastAPI routes it afresh
                    if read:
                        receive = _replay(b"".join(read), receive)
                    break
        await self.app(scope, receive, send)


def install_hot_routes(app: FastAPI, routes: Sequence[HotRoute]) -> None:
    """Call before the edge middleware is added: the edge must wrap the hot routes (the door,
    the request id, the error rendering, the access log)."""
    app.add_middleware(HotRoutes, routes=routes, fastapi=app)


def _recording(receive: Receive, chunks: list[bytes]) -> Receive:
    """`receive` keeping the body chunks it delivers (to replay them if the handler declines)."""

    async def recording() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            chunks.append(message.get("body", b""))
        return message

    return recording


def _replay(body: bytes, receive: Receive) -> Receive:
    """`receive` with the request body (already read) delivered again first."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _route_path(scope: Scope) -> str:
    """The path as the router matches it (without the root path, as Starlette does)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path
