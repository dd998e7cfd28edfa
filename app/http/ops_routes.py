"""Health, readiness, database status, tenant traffic configuration and metrics."""

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.http.di import Provide, inject
from app.http.schemas import problem_responses
from app.http.security import Operator
from app.metrics import Metrics
from app.ops.schemas import DatabaseStatus, Liveness, Readiness
from app.ops.service import OpsService
from app.tenancy.schemas import TenantOpsRead
from app.tenancy.service import TenancyService

router = APIRouter(tags=["ops"])


@router.get("/health/live", response_model=Liveness)
async def get_liveness() -> Liveness:
    """The process is up (no dependency is checked)."""
    return Liveness(status="live")


@router.get(
    "/health/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready"}},
)
@inject
async def get_readiness(ops: OpsService = Provide["ops_service"]) -> JSONResponse:
    """Ready for traffic: the primary answers and the door has room (503 otherwise)."""
    readiness = await ops.readiness()
    body = Readiness.model_validate(readiness.detail).model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=200 if readiness.ready else 503)


@router.get(
    "/ops/db",
    dependencies=[Operator],
    response_model=DatabaseStatus,
    responses=problem_responses(401),
)
@inject
async def get_database_status(ops: OpsService = Provide["ops_service"]) -> DatabaseStatus:
    """Pools, replicas, routing and breakers as this process sees them."""
    return DatabaseStatus.model_validate(ops.database_status())


@router.get(
    "/ops/tenants/{tenant_id}",
    dependencies=[Operator],
    response_model=TenantOpsRead,
    responses=problem_responses(401, 404, 422),
)
@inject
async def get_tenant_status(
    tenant_id: uuid.UUID, tenancy: TenancyService = Provide["tenancy_service"]
) -> TenantOpsRead:
    """A tenant's plan, overrides and effective policy (with the source of every value) as
    this process applies it, and the database connections it holds here."""
    return TenantOpsRead.of(await tenancy.status(tenant_id))


@router.get(
    "/metrics",
    dependencies=[Operator],
    response_class=PlainTextResponse,
    responses=problem_responses(401),
)
@inject
async def get_metrics(metrics: Metrics = Provide["metrics"]) -> Response:
    """Prometheus metrics of this process (text exposition format)."""
    return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)
