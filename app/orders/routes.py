"""Order routes: place (idempotent, with a hot path), list, read, cancel; the live status
WebSockets (app/http/websocket.py has their edge, app/orders/live.py the fan-out)."""

import re
import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, WebSocket, status
from pydantic import ValidationError
from starlette.responses import JSONResponse

from app.core.errors import DomainError, InvalidRequest
from app.http import websocket as ws
from app.http.di import Provide, inject
from app.http.errors import render_domain
from app.http.hot import HotRoute
from app.http.params import Cursor, Limit
from app.http.schemas import AUTHENTICATED, Page, problem_responses
from app.http.security import OrdersReader, OrdersWriter, authenticate, credentials
from app.identity.authenticator import Authenticator
from app.identity.permissions import Permission
from app.identity.principal import Principal
from app.identity.tickets import WsTicketService
from app.orders.live import OrderEventHub
from app.orders.schemas import OrderCreate, OrderRead
from app.orders.service import OrderService, fingerprint
from app.ratelimit.quotas import TenantQuotas
from app.settings import Settings

router = APIRouter(prefix="/v1/orders", tags=["orders"])
_AUTH = AUTHENTICATED
_KEY_PATTERN = r"^[\x21-\x7e]+$"
_KEY = re.compile(_KEY_PATTERN)


class IdempotencyKeyRequired(InvalidRequest):
    code = "idempotency.key_required"
    title = "Idempotency-Key header required"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=OrderRead,
    responses={
        **problem_responses(*_AUTH, 402, 409, 422),
        201: {"description": "Created (or replayed: `Idempotent-Replayed: true`)"},
    },
)
@inject
async def place_order(
    request: Request,
    body: OrderCreate,
    principal: OrdersWriter,
    idempotency_key: Annotated[
        str | None,
        Header(
            max_length=255,
            pattern=_KEY_PATTERN,
            description="Required. The same key with the same body replays the first answer.",
        ),
    ] = None,
    service: OrderService = Provide["order_service"],
) -> Response:
    """Reserve the stock of every line (all or nothing), authorize the payment, confirm.
    402 `payment.declined` and 503 `payment.unavailable` give the stock back; only the 503
    leaves the key unused (retry with the same key)."""
    if not idempotency_key:
        raise IdempotencyKeyRequired("send an Idempotency-Key header (a unique string per order)")
    return await _placed(request, service, principal, idempotency_key, body)


@inject
async def place_order_hot(
    request: Request,
    service: OrderService = Provide["order_service"],
    authenticator: Authenticator = Provide["authenticator"],
    quotas: TenantQuotas = Provide["tenant_quotas"],
) -> Response | None:
    """`place_order`'s fast path (app/http/hot.py): a JSON body that validates and a well-formed
    key. Anything else is declined before authenticating (FastAPI answers it, 422s included)."""
    key = request.headers.get("idempotency-key")
    if not key or len(key) > 255 or not _KEY.fullmatch(key):
        return None
    if request.headers.get("content-type") != "application/json":
        return None
    try:
        body = OrderCreate.model_validate_json(await request.body())
    except ValidationError:
        return None
    api_key, access_token = await credentials(request)
    principal = await authenticate(
        request, api_key, access_token, Permission.ORDERS_WRITE, authenticator, quotas
    )
    return await _placed(request, service, principal, key, body)


async def _placed(
    request: Request, service: OrderService, principal: Principal, key: str, body: OrderCreate
) -> Response:
    outcome = await service.place(
        principal.tenant_id,
        key,
        fingerprint(body.model_dump(mode="json")),
        [(item.product_id, item.quantity) for item in body.items],
        body.payment.token,
    )
    if outcome.refusal is not None:  # a declined or rejected payment, kept by the key
        response = await render_domain(request, outcome.refusal)
    else:
        assert outcome.order is not None
        response = JSONResponse(
            OrderRead.of(outcome.order).model_dump(mode="json"),
            status_code=status.HTTP_201_CREATED,
            headers={"Location": f"{router.prefix}/{outcome.order.id}"},
        )
    if outcome.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response


@router.get("", response_model=Page[OrderRead], responses=problem_responses(*_AUTH, 422))
@inject
async def list_orders(
    principal: OrdersReader,
    limit: Limit = 20,
    cursor: Cursor = None,
    service: OrderService = Provide["order_service"],
) -> Page[OrderRead]:
    """The tenant's orders, oldest first, one page at a time."""
    return Page[OrderRead].of(await service.list(principal.tenant_id, limit, cursor), OrderRead.of)


@router.get("/{order_id}", response_model=OrderRead, responses=problem_responses(*_AUTH, 404, 422))
@inject
async def get_order(
    order_id: uuid.UUID, principal: OrdersReader, service: OrderService = Provide["order_service"]
) -> OrderRead:
    """One order with its lines and status."""
    return OrderRead.of(await service.get(principal.tenant_id, order_id))


@router.post(
    "/{order_id}/cancel",
    response_model=OrderRead,
    responses=problem_responses(*_AUTH, 404, 409, 422),
)
@inject
async def cancel_order(
    order_id: uuid.UUID, principal: OrdersWriter, service: OrderService = Provide["order_service"]
) -> OrderRead:
    """Voids the payment and restocks; cancelling a cancelled order returns it unchanged."""
    return OrderRead.of(await service.cancel(principal.tenant_id, order_id))


_AFTER = Query(
    ge=0,
    le=2**63 - 1,
    description="Resume point: the last `seq` received (one order; default 0, its whole"
    " history) or the last `position` (the tenant's stream; default: live only).",
)


@router.websocket("/events")
@inject
async def watch_orders(
    websocket: WebSocket,
    after: Annotated[int | None, _AFTER] = None,
    hub: OrderEventHub = Provide["order_event_hub"],
    authenticator: Authenticator = Provide["authenticator"],
    tickets: WsTicketService = Provide["ws_ticket_service"],
    settings: Settings = Provide["settings"],
) -> None:
    """Status changes of every order of the caller's tenant (WebSocket)."""
    await _watch(websocket, None, after, hub, authenticator, tickets, settings)


@router.websocket("/{order_id}/events")
@inject
async def watch_order(
    websocket: WebSocket,
    order_id: uuid.UUID,
    after: Annotated[int | None, _AFTER] = None,
    hub: OrderEventHub = Provide["order_event_hub"],
    authenticator: Authenticator = Provide["authenticator"],
    tickets: WsTicketService = Provide["ws_ticket_service"],
    settings: Settings = Provide["settings"],
) -> None:
    """Status changes of one order (WebSocket)."""
    await _watch(websocket, order_id, after, hub, authenticator, tickets, settings)


async def _watch(
    websocket: WebSocket,
    order_id: uuid.UUID | None,
    after: int | None,
    hub: OrderEventHub,
    authenticator: Authenticator,
    tickets: WsTicketService,
    settings: Settings,
) -> None:
    config = settings.websocket
    try:  # everything before accept(): a refusal is an HTTP answer, not an upgrade
        ws.check_origin(websocket, config.allowed_origins)
        hub.ensure_available()
        principal = await ws.authenticate(
            websocket, authenticator, tickets, Permission.ORDERS_WATCH
        )
        if order_id is not None:
            await hub.check_order(principal.tenant_id, order_id)
        elif after is None:
            after = await hub.head(principal.tenant_id)
    except DomainError as error:
        await ws.refuse(websocket, error)
        return
    async with hub.subscribe(principal.tenant_id, order_id, after or 0) as subscription:
        await websocket.accept()
        await ws.stream(
            websocket, hub, subscription, config.send_timeout_seconds, config.heartbeat_seconds
        )


HOT_ROUTES = [HotRoute(router, "POST", "", place_order_hot)]
