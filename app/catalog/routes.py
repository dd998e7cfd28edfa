"""Catalog HTTP routes: parse, call the service, shape the response. No SQL, no rules."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request, Response, status
from pydantic import BaseModel

from app.catalog.schemas import (
    ProductCreate,
    ProductRead,
    ProductUpdate,
    StockAdjustmentCreate,
    StockAdjustmentRead,
)
from app.catalog.service import CatalogService, ProductChanges
from app.http.di import Provide, inject
from app.http.etags import etag, not_modified, required_versions
from app.http.hot import UUID, HotRoute
from app.http.params import Cursor, Limit
from app.http.schemas import AUTHENTICATED, Page, Text, problem_responses
from app.http.security import CatalogReader, CatalogWriter, authenticate, credentials
from app.identity.authenticator import Authenticator
from app.identity.permissions import Permission
from app.identity.principal import Principal
from app.ratelimit.quotas import TenantQuotas


def json_response(body: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """Hot reads serialize once, straight from the schema they already built; returning the
    model would make FastAPI validate it again against `response_model` (measured: ~10% of the
    GET's CPU). `response_model` stays declared for the OpenAPI document."""
    return Response(body.model_dump_json(), media_type="application/json", headers=headers)


router = APIRouter(prefix="/v1/products", tags=["catalog"])

_AUTH = AUTHENTICATED


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductRead,
    responses=problem_responses(*_AUTH, 409, 422),
)
@inject
async def create_product(
    body: ProductCreate,
    principal: CatalogWriter,
    response: Response,
    service: CatalogService = Provide["catalog_service"],
) -> ProductRead:
    """Create a product (SKU unique per tenant: 409 `catalog.sku_taken`); returns its ETag."""
    product = await service.create(
        principal.tenant_id,
        body.sku,
        body.name,
        body.description,
        body.price.to_money(),
        body.stock,
    )
    response.headers["Location"] = f"{router.prefix}/{product.id}"
    response.headers["ETag"] = etag(product.version)
    return ProductRead.of(product)


@router.get(
    "",
    response_model=Page[ProductRead],
    responses=problem_responses(*_AUTH, 422),
)
@inject
async def list_products(
    principal: CatalogReader,
    limit: Limit = 20,
    cursor: Cursor = None,
    q: Annotated[Text | None, Query(min_length=1, max_length=100)] = None,
    service: CatalogService = Provide["catalog_service"],
) -> Response:
    """Products, oldest first, one page at a time; `q` matches SKU or name."""
    page = await service.list(principal.tenant_id, limit, cursor, q)
    return json_response(Page[ProductRead].of(page, ProductRead.of))


@router.get(
    "/{product_id}",
    response_model=ProductRead,
    responses={304: {"description": "Not modified"}, **problem_responses(*_AUTH, 404, 422)},
)
@inject
async def get_product(
    product_id: uuid.UUID,
    principal: CatalogReader,
    if_none_match: Annotated[
        str | None,
        Header(description="An ETag you hold: 304 while it is still current."),
    ] = None,
    service: CatalogService = Provide["catalog_service"],
) -> Response:
    """One product with its ETag; `If-None-Match` with a current ETag gives 304."""
    return await _product(service, principal, product_id, if_none_match)


@inject
async def get_product_hot(
    request: Request,
    product_id: str,
    service: CatalogService = Provide["catalog_service"],
    authenticator: Authenticator = Provide["authenticator"],
    quotas: TenantQuotas = Provide["tenant_quotas"],
) -> Response:
    """`get_product`'s fast path (app/http/hot.py): a canonical UUID in the path."""
    api_key, access_token = await credentials(request)
    principal = await authenticate(
        request, api_key, access_token, Permission.CATALOG_READ, authenticator, quotas
    )
    if_none_match = request.headers.get("if-none-match")
    return await _product(service, principal, uuid.UUID(product_id), if_none_match)


async def _product(
    service: CatalogService, principal: Principal, product_id: uuid.UUID, if_none_match: str | None
) -> Response:
    product = await service.get(principal.tenant_id, product_id)
    tag = etag(product.version)
    if not_modified(if_none_match, product.version):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers={"ETag": tag})
    return json_response(ProductRead.of(product), headers={"ETag": tag})


HOT_ROUTES = [HotRoute(router, "GET", "/{product_id}", get_product_hot, product_id=UUID)]


@router.patch(
    "/{product_id}",
    response_model=ProductRead,
    responses=problem_responses(*_AUTH, 404, 409, 412, 422, 428),
)
@inject
async def update_product(
    product_id: uuid.UUID,
    body: ProductUpdate,
    principal: CatalogWriter,
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            description="Required: the ETag you read (428 without it, 412 when the product has"
            " changed since).",
        ),
    ] = None,
    service: CatalogService = Provide["catalog_service"],
) -> ProductRead:
    """Change some fields of a product; `If-Match` must carry the ETag you read."""
    accepted = required_versions(if_match)
    fields = body.model_fields_set
    changes = ProductChanges(
        sku=body.sku,
        name=body.name,
        description=body.description,
        clear_description="description" in fields and body.description is None,
        price=body.price.to_money() if body.price else None,
    )
    product = await service.update(principal.tenant_id, product_id, accepted, changes)
    response.headers["ETag"] = etag(product.version)
    return ProductRead.of(product)


@router.post(
    "/{product_id}/stock-adjustments",
    status_code=status.HTTP_201_CREATED,
    response_model=StockAdjustmentRead,
    responses=problem_responses(*_AUTH, 404, 409, 422),
)
@inject
async def adjust_stock(
    product_id: uuid.UUID,
    body: StockAdjustmentCreate,
    principal: CatalogWriter,
    response: Response,
    service: CatalogService = Provide["catalog_service"],
) -> StockAdjustmentRead:
    """Add or remove stock with a reason (never below zero: 409 `inventory.insufficient`)."""
    result = await service.adjust_stock(principal.tenant_id, product_id, body.delta, body.reason)
    response.headers["ETag"] = etag(result.product.version)
    return StockAdjustmentRead.of(result)
