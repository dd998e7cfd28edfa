"""The edge middleware, as plain ASGI (no BaseHTTPMiddleware task hop on the hot path).

Per request it: assigns `X-Request-ID`; takes the client address from trusted proxies only
(app/http/client_address.py); reads the whole body, within `server.body_timeout_seconds` and
`server.max_body_bytes`, *before* the request takes a door slot (a client that sends one byte every
few seconds holds a socket, never a slot, and gets a 408); turns `X-Consistency-Token` /
`X-Read-Consistency` into the database read preference and a commit's WAL position back into
`X-Consistency-Token`; adds the security headers and the rate-limit headers of the quotas the
request was counted on (app/http/ratelimit.py); renders what escapes the app as a problem (domain
errors and HTTPExceptions raised here or by a hot route, app/http/hot.py, exactly as the app's
handlers render them; anything else as a 500, which still carries the request id); logs and
measures (the access log: one line per request at error for 5xx, warning for 4xx, info
otherwise, with the client address and the user agent).
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import time
from typing import Any

import structlog
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import (
    DomainError,
    InvalidRequest,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
)
from app.db import context as db_context
from app.db.routing import ReadPreference, format_lsn, parse_lsn
from app.http import errors, ratelimit, versioning
from app.http.client_address import TrustedProxies
from app.http.request_id import bind_request_id, unbind_request_id
from app.metrics import Metrics

log = structlog.get_logger("storefront.access")
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
USER_AGENT_LIMIT = 256  # characters of User-Agent the access log keeps


class EdgeMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        metrics: Metrics,
        access_log: bool,
        door: Door,
        max_body_bytes: int,
        body_timeout: float,
        proxies: TrustedProxies,
        body_budget: BodyBudget,
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.door = door
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout
        self.body_budget = body_budget
        self.proxies = proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        incoming = _headers(scope)
        if scope.get("client"):
            peer = scope["client"][0]
            client = self.proxies.client(peer, incoming.get("x-forwarded-for"))
            if client != peer:
                scope["client"] = (client, 0)
        authenticated = "authorization" in incoming or "x-api-key" in incoming
        request_id = incoming.get("x-request-id", "")
        if not _VALID_REQUEST_ID.match(request_id):
            request_id = os.urandom(16).hex()
        # Reset in `finally`: in-process callers (tests, the in-process bench) run many requests
        # in one context, and none may inherit the previous one's values.
        request_id_token = bind_request_id(request_id)
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)

        status = 500
        started_response = False
        close = False  # the body was not read whole: the connection cannot be reused
        held = 0  # bytes of the process's body budget this request holds
        db = db_context.DbRequestContext()
        db_token = db_context.bind(db)

        async def send_with_headers(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                status, started_response = message["status"], True
                raw = message["headers"] = list(message.get("headers", ()))
                raw.append((b"x-request-id", request_id.encode()))
                if db.commit_lsn is not None and status < 400:
                    raw.append((b"x-consistency-token", format_lsn(db.commit_lsn).encode()))
                _secure(raw, authenticated)
                served = scope.get(versioning.SCOPE_KEY)
                if served is not None:  # which API version served it, and its deprecation
                    raw.extend(served.headers())
                verdicts = scope.get(ratelimit.SCOPE_KEY)
                if verdicts:
                    raw.extend(ratelimit.response_headers(verdicts))
                if close:
                    raw.append((b"connection", b"close"))
            await send(message)

        try:
            db.preference = _read_preference(incoming)
            if "content-length" in incoming or "transfer-encoding" in incoming:
                try:
                    receive, held = await self._read_body(receive, incoming)
                except (PayloadTooLarge, RequestTimeout, ServerBusy):
                    close = True
                    raise
            if scope["path"].startswith(UNGATED):
                await self.app(scope, receive, send_with_headers)
            elif not await self.door.enter():
                raise ServerBusy("too many requests in progress; retry shortly")
            else:
                try:
                    await self.app(scope, receive, send_with_headers)
                finally:
                    self.door.leave()
        except _ClientGone:
            status = 499  # nginx's name for it: nobody is left to answer
        except DomainError as error:  # raised here, before the app's own handlers
            response = await errors.render_domain(Request(scope), error)
            await response(scope, receive, send_with_headers)
        except HTTPException as error:  # from a hot route: FastAPI's routes render their own
            response = await errors.render_http(Request(scope), error)
            await response(scope, receive, send_with_headers)
        except Exception as error:
            if started_response:  # headers already sent: nothing sane left to do
                raise
            response = await errors.render_unexpected(Request(scope), error)
            await response(scope, receive, send_with_headers)
        finally:
            if held:
                self.body_budget.give(held)
            self._finish(scope, status, time.perf_counter() - started, incoming.get("user-agent"))
            db_context.unbind(db_token)
            unbind_request_id(request_id_token)
            structlog.contextvars.clear_contextvars()

    async def _read_body(self, receive: Receive, incoming: dict[str, str]) -> tuple[Receive, int]:
        """The whole body, or 413/408 (503 when the process already holds its budget of bodies
        in flight); the app then gets it in one message, at once. Returns the bytes of budget
        taken, for the caller to give back when the request ends."""
        length = incoming.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise InvalidRequest("Content-Length must be a whole number")
            if int(length) > self.max_body_bytes:
                raise BodyTooLarge(f"request bodies are limited to {self.max_body_bytes} bytes")
            if length == "0":
                return receive, 0
        held = 0
        chunks: list[bytes] = []
        size = 0
        try:
            if length is not None:
                held = self._take(int(length))
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _ClientGone()
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body_bytes:
                        raise BodyTooLarge(
                            f"request bodies are limited to {self.max_body_bytes} bytes"
                        )
                    if length is None:  # chunked: the budget is taken as the body arrives
                        held += self._take(len(chunk))
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            self.body_budget.give(held)
            raise BodyTimeout(
                f"the request body did not arrive within {self.body_timeout:g} s"
            ) from None
        except BaseException:
            self.body_budget.give(held)
            raise
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # after the body: disconnect, as the server reports it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        return replay, held

    def _take(self, size: int) -> int:
        if not self.body_budget.take(size):
            raise ServerBusy("too many request bodies are being received; retry shortly")
        return size

    def _finish(self, scope: Scope, status: int, seconds: float, user_agent: str | None) -> None:
        route: Any = scope.get("route")
        template = route.path if route is not None else "unmatched"
        self.metrics.observe_http(scope["method"], template, status, seconds)
        if self.access_log:
            # 5xx: ours to fix (error); 4xx: the client's (warning); else info.
            write = log.error if status >= 500 else log.warning if status >= 400 else log.info
            write(
                "http.request",
                method=scope["method"],
                route=template,
                path=scope["path"],
                client=scope["client"][0] if scope.get("client") else None,
                user_agent=user_agent[:USER_AGENT_LIMIT] if user_agent else None,
                status=status,
                ms=round(seconds * 1000, 2),
            )


class BodyBudget:
    """Bytes of request bodies being received at once in this process: slow senders can hold
    at most this much memory between them (each body is also capped by max_body_bytes)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_use = 0

    def take(self, size: int) -> bool:
        if self.in_use + size > self.limit:
            return False
        self.in_use += size
        return True

    def give(self, size: int) -> None:
        self.in_use -= size


class Door:
    """At most `limit` requests are worked on at once; the rest wait here, FIFO, doing nothing.

    A saturated event loop runs every timer late (a pool wait meant to end at 0.5 s ends at
    0.7 s or later). Waiting here costs no CPU, so the requests inside get the loop's full
    attention and their deadlines hold; a request that cannot enter within `timeout` gets a 503
    with Retry-After.
    """

    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self._slots = asyncio.Semaphore(limit)
        self.inside = 0
        self.waiting = 0
        self.turned_away = 0
        self._last_turned_away = -math.inf

    @property
    def saturated(self) -> bool:
        """Full with a queue, or turned someone away lately: a load balancer should send new
        work elsewhere (readiness says so) until it drains."""
        recently = time.monotonic() - self._last_turned_away < max(5.0, 2 * self.timeout)
        return recently or (self.inside >= self.limit and self.waiting > 0)

    async def enter(self) -> bool:
        if self._slots.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.timeout):
                    await self._slots.acquire()
            except TimeoutError:
                self.turned_away += 1
                self._last_turned_away = time.monotonic()
                return False
            finally:
                self.waiting -= 1
        else:
            await self._slots.acquire()  # free: returns at once
        self.inside += 1
        return True

    def leave(self) -> None:
        self.inside -= 1
        self._slots.release()


# Operators must see a saturated process: health and ops endpoints skip the door.
UNGATED = ("/health/", "/ops/", "/metrics")


class InvalidConsistencyToken(InvalidRequest):
    code = "consistency.invalid_token"
    title = "Invalid consistency token"


class InvalidReadConsistency(InvalidRequest):
    code = "consistency.invalid_mode"
    title = "Invalid read consistency"


class ServerBusy(ServiceUnavailable):
    code = "server.busy"
    title = "Server busy"


class BodyTooLarge(PayloadTooLarge):
    code = "request.too_large"
    title = "Request body too large"


class BodyTimeout(RequestTimeout):
    code = "request.body_timeout"
    title = "Request body too slow"


class _ClientGone(Exception):
    """The client disconnected before its body arrived: there is no one to answer."""


def _secure(raw: list[tuple[bytes, bytes]], authenticated: bool) -> None:
    """No MIME sniffing and no framing anywhere; nothing sent to a credential kept by a cache.
    A route that sets its own policy (the docs page) or caching keeps it."""
    has_policy = has_caching = False
    for name, _ in raw:
        if name == b"content-security-policy":
            has_policy = True
        elif name == b"cache-control":
            has_caching = True
    raw.append((b"x-content-type-options", b"nosniff"))
    if not has_policy:
        raw.append((b"content-security-policy", _API_CSP))
    if authenticated and not has_caching:
        raw.append((b"cache-control", b"no-store"))


_API_CSP = b"default-src 'none'; frame-ancestors 'none'"


def _read_preference(incoming: dict[str, str]) -> ReadPreference:
    token = incoming.get("x-consistency-token")
    min_lsn = parse_lsn(token) if token else None  # an empty header is no token
    if token and min_lsn is None:
        raise InvalidConsistencyToken("X-Consistency-Token must be a value this API returned")
    mode = incoming.get("x-read-consistency")
    if mode is not None and mode != "strong":
        raise InvalidReadConsistency("X-Read-Consistency takes one value: strong")
    return ReadPreference(min_lsn=min_lsn, strong=mode is not None)


def _headers(scope: Scope) -> dict[str, str]:
    return {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope["headers"]
        if name in _INTERESTING
    }


_INTERESTING = frozenset(
    {
        b"x-request-id",
        b"x-consistency-token",
        b"x-read-consistency",
        b"content-length",
        b"transfer-encoding",
        b"x-forwarded-for",
        b"authorization",
        b"x-api-key",
        b"user-agent",
    }
)
