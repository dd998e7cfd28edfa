"""Who is calling: `X-API-Key` or `Authorization: Bearer <access token>` for tenants, a bearer
operator token for ops endpoints. An authenticated tenant request is then counted on its
tenant's quota (app/http/ratelimit.py). Routes declare the permission they need
(`Annotated[Principal, Depends(require(Permission.CATALOG_READ))]`); the rules themselves live in
app/identity/permissions.py."""

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, Request, Security
from fastapi.security import (
    APIKeyHeader,
    HTTPAuthorizationCredentials,
    HTTPBearer,
    OAuth2PasswordBearer,
)
from pydantic import SecretStr

from app.core.errors import Unauthenticated
from app.http.client_address import throttle_bucket
from app.http.di import Provide, inject
from app.http.ratelimit import admit_tenant
from app.http.versioning import pin_tenant
from app.identity.authenticator import Authenticator
from app.identity.permissions import Permission
from app.identity.principal import Principal
from app.ratelimit.quotas import TenantQuotas
from app.settings import Settings

# Declared as security schemes so /docs offers "Authorize" with either credential.
_API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False, description="sf_live_... secret")
_BEARER = OAuth2PasswordBearer(
    tokenUrl="/v1/auth/token",
    refreshUrl="/v1/auth/refresh",
    auto_error=False,
    description="Access token (a JWT, issued and checked per RFC8725: explicit algorithms,"
    " `exp`, `iss` and `aud` always verified, short-lived with rotating refresh tokens) from"
    " /v1/auth/token.",
)
_OPERATOR = HTTPBearer(
    scheme_name="OperatorToken",
    auto_error=False,
    description="The operator token (`ops.operator_token`); ops endpoints only.",
)


def require(permission: Permission | None) -> Callable[..., Awaitable[Principal]]:
    """A dependency that authenticates the caller and checks one permission (None: any
    authenticated caller).

    One dependency rather than two chained ones: FastAPI's per-dependency cost is paid on every
    request of the hot path.
    """

    @inject
    async def authenticated(
        request: Request,
        x_api_key: Annotated[str | None, Security(_API_KEY)] = None,
        access_token: Annotated[str | None, Security(_BEARER)] = None,
        authenticator: Authenticator = Provide["authenticator"],
        quotas: TenantQuotas = Provide["tenant_quotas"],
    ) -> Principal:
        return await authenticate(
            request, x_api_key, access_token, permission, authenticator, quotas
        )

    return authenticated


async def authenticate(
    request: Request,
    x_api_key: str | None,
    access_token: str | None,
    permission: Permission | None,
    authenticator: Authenticator,
    quotas: TenantQuotas,
) -> Principal:
    """The caller of a tenant request, counted on its tenant's quota and checked for
    `permission`: the dependency above and the hot routes (app/http/hot.py) both call this."""
    if x_api_key:
        # The edge has made request.client the real client (trusted proxies applied).
        client = request.client
        principal = await authenticator.api_key(
            x_api_key, throttle_bucket(client.host) if client else "unknown"
        )
    elif access_token:
        principal = await authenticator.bearer(access_token)
    else:
        raise Unauthenticated("send an API key (X-API-Key) or a bearer access token")
    structlog.contextvars.bind_contextvars(tenant=str(principal.tenant_id))
    await pin_tenant(
        request.scope, principal.tenant_id
    )  # its API version, unless the request names one
    # The tenant's quota (per API key where its policy says so): 429 past it.
    key_id = principal.id if principal.kind == "api_key" else None
    await admit_tenant(request, quotas, principal.tenant_id, key_id)
    if permission is not None:
        principal.require(permission)
    return principal


async def credentials(request: Request) -> tuple[str | None, str | None]:
    """(API key, access token) read from a request exactly as the dependency's declared
    security schemes read them (the same objects do it)."""
    return await _API_KEY(request), await _BEARER(request)


@inject
async def require_operator(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_OPERATOR)] = None,
    settings: Settings = Provide["settings"],
) -> None:
    check_operator(settings.ops.operator_token, credentials.credentials if credentials else None)


def check_operator(expected: SecretStr | None, token: str | None) -> None:
    """The bearer token must be `ops.operator_token`, else Unauthenticated (also when no token
    is configured). The API's ops routes and the worker's /metrics ask the same."""
    if (
        not token
        or expected is None
        or not hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
    ):
        raise Unauthenticated("operator endpoints need Authorization: Bearer <operator token>")


def allowed(permission: Permission | None) -> object:
    """`Annotated[Principal, allowed(...)]`: the caller, checked for `permission`."""
    return Depends(require(permission))


Authenticated = Annotated[Principal, allowed(None)]
CatalogReader = Annotated[Principal, allowed(Permission.CATALOG_READ)]
CatalogWriter = Annotated[Principal, allowed(Permission.CATALOG_WRITE)]
UsersReader = Annotated[Principal, allowed(Permission.USERS_READ)]
UsersManager = Annotated[Principal, allowed(Permission.USERS_MANAGE)]
ApiKeysReader = Annotated[Principal, allowed(Permission.API_KEYS_READ)]
ApiKeysManager = Annotated[Principal, allowed(Permission.API_KEYS_MANAGE)]
ApiKeysDeleter = Annotated[Principal, allowed(Permission.API_KEYS_DELETE)]
OrdersReader = Annotated[Principal, allowed(Permission.ORDERS_READ)]
OrdersWriter = Annotated[Principal, allowed(Permission.ORDERS_WRITE)]
OrdersWatcher = Annotated[Principal, allowed(Permission.ORDERS_WATCH)]
ReportsReader = Annotated[Principal, allowed(Permission.REPORTS_READ)]
VersionPinner = Annotated[Principal, allowed(Permission.API_VERSION_PIN)]
SsoManager = Annotated[Principal, allowed(Permission.SSO_MANAGE)]
Operator = Depends(require_operator)
