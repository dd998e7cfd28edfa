"""Operator-facing response schemas (health, readiness, /ops/db)."""

from __future__ import annotations

from pydantic import BaseModel


class Liveness(BaseModel):
    status: str


class PrimaryReadiness(BaseModel):
    reachable: bool
    busy: bool | None = None
    schema_revision: str | None = None
    expected_schema: str | None = None
    error: str | None = None


class ReplicaReadiness(BaseModel):
    name: str
    reachable: bool
    lag_seconds: float | None


class DoorReadiness(BaseModel):
    limit: int
    inside: int
    waiting: int
    saturated: bool


class Readiness(BaseModel):
    status: str  # "ready" | "not_ready"
    primary: PrimaryReadiness
    replicas: list[ReplicaReadiness]
    door: DoorReadiness


class PoolStatus(BaseModel):
    size: int
    checked_out: int
    overflow: int
    idle: int
    waiting: int


class BreakerStatus(BaseModel):
    state: str  # closed | open | half-open
    failures: int


class EngineStatus(BaseModel):
    name: str
    role: str
    weight: int
    pool: PoolStatus
    pool_timeouts: int
    max_checkout_wait_seconds: float
    breaker: BreakerStatus
    healthy: bool
    reachable: bool | None
    lsn: str | None
    lag_bytes: int | None
    lag_seconds: float | None
    checked_at: float | None
    error: str | None
    routed_reads: int


class RoutingStatus(BaseModel):
    max_replica_lag_seconds: float
    stale_reads_on_primary_outage: bool
    fallbacks: dict[str, int]


class TenantConnections(BaseModel):
    tenant_id: str
    role: str  # primary | replica
    in_use: int
    waiting: int
    limit: int  # the tenant's db_concurrency_<role>
    rejected: int  # 503 database.tenant_busy since start


class TenantFairness(BaseModel):
    busy: list[TenantConnections]  # tenants holding or waiting for connections now
    rejected: dict[str, int]  # per role, every tenant


class DatabaseStatus(BaseModel):
    engines: list[EngineStatus]
    routing: RoutingStatus
    tenants: TenantFairness
