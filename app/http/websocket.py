"""The WebSocket edge of the live order status: everything before `accept()` and the send loop.

Before the upgrade: the `Origin` allow-list (`websocket.allowed_origins`; clients that send no
Origin, i.e. not browsers, pass), then the credential: `?ticket=` (from `POST /v1/ws-tickets`,
single use) or, for machine clients, `X-API-Key` / `Authorization: Bearer` through the same
authenticator as every request; then the permission and, for one order, that the tenant has it.
A refusal is the same problem+json an HTTP request would get (401, 403, 404, 503), sent with the
ASGI WebSocket Denial Response extension, so the client sees an HTTP status and no upgrade
(uvicorn supports it); a server without the extension gets a close (1008) before accept.

After `accept()`: one task sends, one receives (only to see the client leave). Messages are
JSON text: `{"type": "order.status", "order_id", "seq", "status", "at", "position"}` and,
after `websocket.heartbeat_seconds` without one, `{"type": "heartbeat"}`. A message not taken
within `websocket.send_timeout_seconds`, or a full buffer, closes with 1013 (try again later:
the client reconnects with `?after=` its last sequence); shutdown closes with 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from datetime import UTC, datetime

import structlog
from starlette.websockets import WebSocket

from app.core.errors import DomainError, Forbidden, Unauthenticated
from app.http.client_address import throttle_bucket
from app.http.errors import render_domain
from app.identity.authenticator import Authenticator
from app.identity.permissions import Permission
from app.identity.principal import Principal
from app.identity.tickets import WsTicketService
from app.orders.live import HubClosing, OrderEventHub, SlowConsumer, Subscription
from app.orders.repository import OrderEventRecord

log = structlog.get_logger(__name__)
GOING_AWAY = 1001
POLICY_VIOLATION = 1008
INTERNAL_ERROR = 1011
TRY_AGAIN_LATER = 1013
_CLOSE_WAIT_SECONDS = 1.0


class OriginNotAllowed(Forbidden):
    code = "websocket.origin_not_allowed"
    title = "Origin not allowed"


def check_origin(websocket: WebSocket, allowed: list[str]) -> None:
    origin = websocket.headers.get("origin")
    if origin is not None and origin not in allowed:
        raise OriginNotAllowed(f"connections from {origin} are not allowed")


async def authenticate(
    websocket: WebSocket,
    authenticator: Authenticator,
    tickets: WsTicketService,
    permission: Permission,
) -> Principal:
    ticket = websocket.query_params.get("ticket")
    api_key = websocket.headers.get("x-api-key")
    authorization = websocket.headers.get("authorization", "")
    if ticket:
        principal = await tickets.redeem(ticket)
    elif api_key:
        client = websocket.client
        principal = await authenticator.api_key(
            api_key, throttle_bucket(client.host) if client else "unknown"
        )
    elif authorization[:7].lower() == "bearer " and authorization[7:].strip():
        principal = await authenticator.bearer(authorization[7:].strip())
    else:
        raise Unauthenticated("send ?ticket= (from POST /v1/ws-tickets) or an X-API-Key header")
    principal.require(permission)
    return principal


async def refuse(websocket: WebSocket, error: DomainError) -> None:
    """Before accept: an HTTP problem+json response instead of the upgrade."""
    response = await render_domain(websocket, error)
    try:
        await websocket.send_denial_response(response)
    except RuntimeError:  # the server lacks the Denial Response extension
        await websocket.close(code=POLICY_VIOLATION, reason=error.code)


def message(event: OrderEventRecord) -> str:
    return json.dumps(
        {
            "type": "order.status",
            "order_id": str(event.order_id),
            "seq": event.seq,
            "status": event.status,
            "at": event.occurred_at.isoformat(),
            "position": event.position,
        }
    )


async def stream(
    websocket: WebSocket,
    hub: OrderEventHub,
    subscription: Subscription,
    send_timeout: float,
    heartbeat: float,
) -> None:
    """Accepted: send until the client leaves, is too slow, or the process shuts down."""
    sender = asyncio.create_task(_send(websocket, hub, subscription, send_timeout, heartbeat))
    receiver = asyncio.create_task(_until_disconnect(websocket))
    try:
        await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, receiver):
            task.cancel()
        await asyncio.gather(sender, receiver, return_exceptions=True)


async def _until_disconnect(websocket: WebSocket) -> None:
    """Client messages are not used (the resume point is `?after=`): read to see it leave."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _send(
    websocket: WebSocket,
    hub: OrderEventHub,
    subscription: Subscription,
    send_timeout: float,
    heartbeat: float,
) -> None:
    try:
        while True:
            event = await subscription.next(heartbeat)
            text = (
                message(event)
                if event is not None
                else json.dumps({"type": "heartbeat", "at": datetime.now(UTC).isoformat()})
            )
            try:
                await asyncio.wait_for(websocket.send_text(text), send_timeout)
            except TimeoutError:
                hub.dropped("send_timeout")
                await _close(websocket, TRY_AGAIN_LATER, "too slow: reconnect with ?after=")
                return
    except SlowConsumer:
        hub.dropped("queue_full")
        await _close(websocket, TRY_AGAIN_LATER, "too slow: reconnect with ?after=")
    except HubClosing:
        await _close(websocket, GOING_AWAY, "server shutting down: reconnect with ?after=")
    except Exception as error:  # the database, while catching up
        log.warning("live.socket_failed", error=repr(error))
        await _close(websocket, INTERNAL_ERROR, "try again with ?after=")


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await asyncio.wait_for(websocket.close(code=code, reason=reason), _CLOSE_WAIT_SECONDS)
