"""The tenant's API version: read it (any caller), pin it (the owner). Operators pin with
`storefront tenants api-version SLUG VERSION`."""

from __future__ import annotations

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from app.http.di import Provide, inject
from app.http.schemas import AUTHENTICATED, problem_responses
from app.http.security import Authenticated, VersionPinner
from app.http.versioning import served_version
from app.tenancy.policies import TenantPolicies
from app.tenancy.service import TenancyService
from app.versions import NEWEST, VERSIONS

router = APIRouter(prefix="/v1/api-version", tags=["tenants"])


class ApiVersionPin(BaseModel):
    version: str = Field(
        description="A version name (see `versions`); 400 `api.version_unknown` otherwise.",
        examples=[NEWEST.name],
        pattern=r"^\d{4}-\d{2}-\d{2}$",
        max_length=10,
    )


class ApiVersionRead(BaseModel):
    pinned: str = Field(description="What the tenant's requests without a header get.")
    served: str = Field(description="What served this request (the header wins over the pin).")
    newest: str
    versions: list[str] = Field(description="Every version, oldest first (docs/changelog.md).")

    @classmethod
    def of(cls, pinned: str, served: str) -> ApiVersionRead:
        return cls(
            pinned=pinned,
            served=served,
            newest=NEWEST.name,
            versions=[version.name for version in VERSIONS],
        )


@router.get("", response_model=ApiVersionRead, responses=problem_responses(*AUTHENTICATED))
@inject
async def get_api_version(
    request: Request,
    principal: Authenticated,
    policies: TenantPolicies = Provide["tenant_policies"],
) -> ApiVersionRead:
    """The version the caller's tenant is pinned to, and the one serving this request."""
    pinned = await policies.api_version_of(principal.tenant_id) or NEWEST.name
    return ApiVersionRead.of(pinned, served_version(request.scope).name)


@router.put("", response_model=ApiVersionRead, responses=problem_responses(*AUTHENTICATED, 422))
@inject
async def pin_api_version(
    request: Request,
    body: ApiVersionPin,
    principal: VersionPinner,
    service: TenancyService = Provide["tenancy_service"],
) -> ApiVersionRead:
    """Pin the tenant (owner only): every request without a `Storefront-Version` header gets
    this version, in every API process within about 2 s. Read docs/changelog.md first."""
    record = await service.pin_api_version(principal.tenant_id, body.version)
    return ApiVersionRead.of(record.api_version or NEWEST.name, served_version(request.scope).name)
