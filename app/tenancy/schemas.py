"""Operator view of one tenant's traffic configuration (GET /ops/tenants/{id})."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from app.tenancy.policy import POLICY_FIELDS
from app.tenancy.service import TenantOpsStatus


class PolicyValue(BaseModel):
    value: int | bool
    source: str = Field(description='"defaults", "plan:<name>", "override" or "emergency".')


class StoredConfig(BaseModel):
    plan: str
    plan_known: bool
    overrides: dict[str, Any]
    emergency: dict[str, Any]
    config_updated_at: datetime


class QuotaUsage(BaseModel):
    name: str = Field(description='The policy name in the RateLimit headers ("tenant", "burst").')
    limit: int
    window_seconds: int
    remaining: int | None = Field(description="Requests left in the window; null: store down.")
    reset_seconds: int


class RateLimitUsage(BaseModel):
    enabled: bool = Field(description="rate_limits.enabled: false means nothing is refused.")
    shared: bool = Field(
        description="True: counted in Redis, shared by every process; false: this process only."
    )
    quotas: list[QuotaUsage]


class RoleUsage(BaseModel):
    in_use: int
    waiting: int
    limit: int
    rejected: int


class TenantOpsRead(BaseModel):
    id: uuid.UUID
    slug: str
    stored: StoredConfig
    policy: dict[str, PolicyValue] = Field(
        description="The effective policy this process applies now (its cache)."
    )
    policy_current: bool = Field(
        description="False while a change committed in the database has not reached this"
        " process's cache yet."
    )
    database: dict[str, RoleUsage] = Field(
        description="This process's connections held by the tenant, per role (fairness)."
    )
    rate_limit: RateLimitUsage | None = Field(
        None, description="The tenant's quota windows as the limiter sees them (none counted)."
    )
    flags: dict[str, bool] | None = Field(
        None, description="Every feature flag, evaluated for the tenant."
    )

    @classmethod
    def of(cls, status: TenantOpsStatus) -> TenantOpsRead:
        config, policy = status.config, status.policy
        return cls(
            id=config.id,
            slug=config.slug,
            stored=StoredConfig(
                plan=config.plan,
                plan_known=status.stored.plan_known,
                overrides=config.overrides,
                emergency=config.emergency,
                config_updated_at=config.config_updated_at,
            ),
            policy={
                name: PolicyValue(value=getattr(policy, name), source=policy.sources[name])
                for name in POLICY_FIELDS
            },
            policy_current=policy == status.stored and policy.sources == status.stored.sources,
            database={role: RoleUsage(**figures) for role, figures in status.database.items()},
            rate_limit=RateLimitUsage.model_validate(status.rate_limit)
            if status.rate_limit is not None
            else None,
            flags=status.flags,
        )
