"""Public sign-up: POST /v1/tenants (404 when auth.signup_enabled is false; limited per client
address by auth.signup_limit)."""

from fastapi import APIRouter, Depends, Request, status

from app.http.client_address import throttle_bucket
from app.http.di import Provide, inject
from app.http.ratelimit import limited_by_address
from app.http.schemas import problem_responses
from app.identity.schemas import TenantRef, UserRead
from app.tenants.schemas import SignupRead, TenantSignup
from app.tenants.service import TenantService

router = APIRouter(prefix="/v1/tenants", tags=["tenants"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupRead,
    responses=problem_responses(400, 404, 409, 422, 429, 503),
    dependencies=[Depends(limited_by_address)],
)
@inject
async def sign_up(
    request: Request,
    body: TenantSignup,
    service: TenantService = Provide["tenant_service"],
) -> SignupRead:
    """A new tenant and its owner. 409 `tenant.slug_taken` for a taken slug; an email already
    registered in another tenant is no obstacle (emails are unique per tenant), so the answer
    tells nothing about other tenants' users. Attempts are limited per client address
    (`auth.signup_limit`): beyond it 429 `tenant.signup_limited` with `Retry-After`."""
    client_ip = throttle_bucket(request.client.host) if request.client else "unknown"
    tenant, owner = await service.sign_up(
        body.slug, body.name, str(body.owner.email), body.owner.password, client_ip
    )
    return SignupRead(
        tenant=TenantRef.of(tenant),
        owner=UserRead.of(owner),
    )
