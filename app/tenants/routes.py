"""Public sign-up: POST /v1/tenants (404 when auth.signup_enabled is false)."""

from fastapi import APIRouter, Response, status

from app.http.di import Provide, inject
from app.http.schemas import problem_responses
from app.identity.schemas import TenantRef, UserRead
from app.tenants.schemas import SignupRead, TenantSignup
from app.tenants.service import TenantService

router = APIRouter(prefix="/v1/tenants", tags=["identity"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SignupRead,
    responses=problem_responses(400, 404, 409, 422, 503),
)
@inject
async def sign_up(
    body: TenantSignup,
    response: Response,
    service: TenantService = Provide["tenant_service"],
) -> SignupRead:
    tenant, owner = await service.sign_up(
        body.slug, body.name, str(body.owner.email), body.owner.password
    )
    response.headers["Location"] = f"{router.prefix}/{tenant.id}"
    return SignupRead(
        tenant=TenantRef.of(tenant),
        owner=UserRead.of(owner),
    )
