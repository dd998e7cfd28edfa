"""Who is calling: `X-API-Key` for tenants, a bearer operator token for ops endpoints."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Header, Security
from fastapi.security import APIKeyHeader

from app.core.errors import Unauthenticated
from app.http.di import Provide, inject
from app.identity.principal import Principal
from app.identity.service import ApiKeyService
from app.settings import Settings

# Declared as a security scheme so /docs offers "Authorize" with an API key.
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="sf_live_... secret")


def require(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates `X-API-Key` and checks one scope.

    One dependency rather than two chained ones: FastAPI's per-dependency cost is paid on every
    request of the hot path.
    """

    @inject
    async def authenticated(
        x_api_key: Annotated[str | None, Security(_API_KEY)] = None,
        keys: ApiKeyService = Provide["api_key_service"],
    ) -> Principal:
        if not x_api_key:
            raise Unauthenticated("send an API key in the X-API-Key header")
        principal = await keys.authenticate(x_api_key)
        structlog.contextvars.bind_contextvars(tenant=str(principal.tenant_id))
        principal.require(scope)
        return principal

    return authenticated


@inject
async def require_operator(
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
    settings: Settings = Provide["settings"],
) -> None:
    expected = settings.ops.operator_token
    scheme, _, token = (authorization or "").partition(" ")
    if (
        expected is None
        or scheme.lower() != "bearer"
        or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        raise Unauthenticated("operator endpoints need Authorization: Bearer <operator token>")


CatalogReader = Annotated[Principal, Depends(require("catalog:read"))]
CatalogWriter = Annotated[Principal, Depends(require("catalog:write"))]
Operator = Depends(require_operator)
