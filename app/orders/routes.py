"""Order routes: place (idempotent), list, read, cancel."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response, status
from starlette.responses import JSONResponse

from app.core.errors import InvalidRequest
from app.http.di import Provide, inject
from app.http.errors import problem
from app.http.params import Cursor, Limit
from app.http.schemas import AUTHENTICATED, Page, problem_responses
from app.http.security import OrdersReader, OrdersWriter
from app.orders.schemas import OrderCreate, OrderRead
from app.orders.service import OrderService, fingerprint

router = APIRouter(prefix="/v1/orders", tags=["orders"])
_AUTH = AUTHENTICATED


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
            pattern=r"^[\x21-\x7e]+$",
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
    outcome = await service.place(
        principal.tenant_id,
        idempotency_key,
        fingerprint(body.model_dump(mode="json")),
        [(item.product_id, item.quantity) for item in body.items],
        body.payment.token,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    if outcome.status >= 400:
        b = outcome.body
        return problem(request, outcome.status, b["code"], b["title"], b["detail"], headers=headers)
    headers["Location"] = f"{router.prefix}/{outcome.body['id']}"
    return JSONResponse(outcome.body, status_code=outcome.status, headers=headers)


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
