"""Identity HTTP routes: tokens, the current principal, users, API keys."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request, Response, status

from app.http.client_address import throttle_bucket
from app.http.di import Provide, inject
from app.http.params import Cursor, Limit
from app.http.ratelimit import limited_by_address
from app.http.schemas import AUTHENTICATED, NO_STORE, Page, Text, problem_responses
from app.http.security import (
    ApiKeysDeleter,
    ApiKeysManager,
    ApiKeysReader,
    Authenticated,
    OrdersWatcher,
    UsersManager,
    UsersReader,
)
from app.identity.permissions import Role
from app.identity.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    ApiKeyRotate,
    MeRead,
    RefreshRequest,
    TenantRef,
    TokenResponse,
    UserCreate,
    UserRead,
    UserUpdate,
    WsTicketRead,
)
from app.identity.service import ApiKeyService, AuthService, TokenPair, UserService
from app.identity.tickets import WsTicketService
from app.tenants.service import TenantService

router = APIRouter(prefix="/v1", tags=["identity"])
_AUTH = AUTHENTICATED
# The endpoints that take no credential are counted per client address (rate_limits.anonymous).
_BY_ADDRESS = [Depends(limited_by_address)]


def _tokens(pair: TokenPair, response: Response) -> TokenResponse:
    response.headers.update(NO_STORE)
    return TokenResponse(
        access_token=pair.access_token,
        expires_in=pair.expires_in,
        refresh_token=pair.refresh_token,
    )


@router.post(
    "/auth/token",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 422, 429, 503),
    dependencies=_BY_ADDRESS,
)
@inject
async def login(
    request: Request,
    response: Response,
    username: Annotated[Text, Form(min_length=1, max_length=254, description="The email.")],
    password: Annotated[Text, Form(min_length=1, max_length=128)],
    grant_type: Annotated[str | None, Form(pattern="^password$", max_length=8)] = None,
    tenant: Annotated[
        str | None,
        Form(
            pattern=r"^[a-z0-9-]{3,40}$",
            max_length=40,
            description="The tenant's slug (emails are unique per tenant). Without it the"
            " email's two oldest accounts are tried and the password picks one; a third or"
            " later account of the same email, or two with the same password, must name"
            " the tenant (else the same 401 as a wrong password).",
            examples=["acme"],
        ),
    ] = None,
    service: AuthService = Provide["auth_service"],
) -> TokenResponse:
    """OAuth2 password grant (`username` = email), plus an optional `tenant` field (slug) that
    names the account when the same email is registered in several tenants. Unknown emails,
    wrong passwords and an email that `tenant` is needed for get the same answer (401
    `auth.invalid_credentials`) in the same time; repeated failures lock the account and the
    client IP for a while (429)."""
    client_ip = throttle_bucket(request.client.host) if request.client else "unknown"
    return _tokens(await service.login(username, password, client_ip, tenant), response)


@router.post(
    "/auth/refresh",
    response_model=TokenResponse,
    responses=problem_responses(400, 401, 422, 429, 503),
    dependencies=_BY_ADDRESS,
)
@inject
async def refresh_token(
    body: RefreshRequest, response: Response, service: AuthService = Provide["auth_service"]
) -> TokenResponse:
    """A new pair; the presented refresh token dies. Presenting a dead one again revokes the
    whole session (401 auth.refresh_reused)."""
    return _tokens(await service.refresh(body.refresh_token), response)


@router.post(
    "/auth/logout",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(400, 422, 429, 503),
    dependencies=_BY_ADDRESS,
)
@inject
async def logout(body: RefreshRequest, service: AuthService = Provide["auth_service"]) -> None:
    """Ends the session the refresh token belongs to (its whole family)."""
    await service.logout(body.refresh_token)


@router.get("/me", response_model=MeRead, responses=problem_responses(*_AUTH))
@inject
async def get_me(
    principal: Authenticated,
    tenants: TenantService = Provide["tenant_service"],
    users: UserService = Provide["user_service"],
) -> MeRead:
    """Who is calling: the user or API key, its tenant, role or scopes, and permissions."""
    tenant = await tenants.get(principal.tenant_id)
    user = await users.get(principal.tenant_id, principal.id) if principal.kind == "user" else None
    return MeRead(
        kind=principal.kind,
        id=principal.id,
        tenant=TenantRef.of(tenant),
        email=user.email if user else None,
        role=principal.role.name if principal.role else None,
        scopes=sorted(principal.scopes),
        permissions=sorted(principal.permissions),
    )


@router.post(
    "/ws-tickets",
    status_code=status.HTTP_201_CREATED,
    response_model=WsTicketRead,
    responses=problem_responses(*_AUTH),
)
@inject
async def create_ws_ticket(
    principal: OrdersWatcher,
    response: Response,
    tickets: WsTicketService = Provide["ws_ticket_service"],
) -> WsTicketRead:
    """A single-use, short-lived ticket for the live order status WebSockets
    (`/v1/orders/events`, `/v1/orders/{order_id}/events`): browsers cannot send headers on a
    WebSocket, so they pass `?ticket=`. Bound to this caller's tenant and permissions."""
    issued = await tickets.issue(principal)
    response.headers.update(NO_STORE)
    return WsTicketRead(
        ticket=issued.ticket, expires_at=issued.expires_at, expires_in=issued.ttl_seconds
    )


@router.get("/users", response_model=Page[UserRead], responses=problem_responses(*_AUTH, 422))
@inject
async def list_users(
    principal: UsersReader,
    limit: Limit = 20,
    cursor: Cursor = None,
    service: UserService = Provide["user_service"],
) -> Page[UserRead]:
    """The tenant's users, one page at a time."""
    return Page[UserRead].of(await service.list(principal.tenant_id, limit, cursor), UserRead.of)


@router.post(
    "/users",
    status_code=status.HTTP_201_CREATED,
    response_model=UserRead,
    responses=problem_responses(*_AUTH, 409, 422),
)
@inject
async def create_user(
    body: UserCreate,
    principal: UsersManager,
    service: UserService = Provide["user_service"],
) -> UserRead:
    """Only an owner may create another owner."""
    user = await service.create(
        principal.tenant_id, str(body.email), body.password, Role[body.role], principal
    )
    return UserRead.of(user)


@router.patch(
    "/users/{user_id}",
    response_model=UserRead,
    responses=problem_responses(*_AUTH, 404, 409, 422),
)
@inject
async def update_user(
    user_id: uuid.UUID,
    body: UserUpdate,
    principal: UsersManager,
    service: UserService = Provide["user_service"],
) -> UserRead:
    """Change the role or set a new password (which ends the user's sessions). Making or
    unmaking an owner needs the owner role; the last owner cannot be demoted (409)."""
    user = await service.update(principal, user_id, body.role_value(), body.password)
    return UserRead.of(user)


@router.delete(
    "/users/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(*_AUTH, 404, 409, 422),
)
@inject
async def delete_user(
    user_id: uuid.UUID, principal: UsersManager, service: UserService = Provide["user_service"]
) -> None:
    """Delete a user; their sessions end at once (the last owner cannot be deleted: 409)."""
    await service.delete(principal, user_id)


@router.get("/api-keys", response_model=Page[ApiKeyRead], responses=problem_responses(*_AUTH, 422))
@inject
async def list_api_keys(
    principal: ApiKeysReader,
    limit: Limit = 20,
    cursor: Cursor = None,
    service: ApiKeyService = Provide["api_key_service"],
) -> Page[ApiKeyRead]:
    """No secrets: the prefix identifies a key."""
    page = await service.list(principal.tenant_id, limit, cursor)
    return Page[ApiKeyRead].of(page, ApiKeyRead.of)


@router.post(
    "/api-keys",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(*_AUTH, 422),
)
@inject
async def create_api_key(
    body: ApiKeyCreate,
    principal: ApiKeysManager,
    response: Response,
    service: ApiKeyService = Provide["api_key_service"],
) -> ApiKeyCreated:
    """The secret is in this response only. A key's scopes cannot exceed the creator's."""
    key, secret = await service.issue(
        principal.tenant_id, body.name, list(body.scopes), body.expires_in_days, principal
    )
    response.headers.update(NO_STORE)
    return ApiKeyCreated.with_secret(key, secret)


@router.post(
    "/api-keys/{key_id}/rotate",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(*_AUTH, 404, 422),
)
@inject
async def rotate_api_key(
    key_id: uuid.UUID,
    principal: ApiKeysManager,
    response: Response,
    body: ApiKeyRotate | None = None,
    service: ApiKeyService = Provide["api_key_service"],
) -> ApiKeyCreated:
    """A new secret for the same key settings; the old secret keeps working for the grace
    period, then expires."""
    grace = body.grace_period_seconds if body else None
    key, secret = await service.rotate(principal.tenant_id, key_id, grace, principal)
    response.headers.update(NO_STORE)
    return ApiKeyCreated.with_secret(key, secret)


@router.delete(
    "/api-keys/{key_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(*_AUTH, 404, 422),
)
@inject
async def revoke_api_key(
    key_id: uuid.UUID,
    principal: ApiKeysDeleter,
    service: ApiKeyService = Provide["api_key_service"],
) -> None:
    """Revokes at once. A rotated key in its grace period may not revoke keys (403
    `api_key.rotated`)."""
    await service.revoke(principal.tenant_id, key_id, principal)
