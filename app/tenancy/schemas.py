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
    # Filled by the other parts of issue 9; null until then.
    rate_limit: dict[str, Any] | None = Field(
        None, description="Rate-limit usage (issue 9 item 2; null until the limiter lands)."
    )
    flags: dict[str, Any] | None = Field(
        None, description="Evaluated feature flags (issue 9 item 4; null until wired here)."
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
            rate_limit=status.rate_limit,
            flags=status.flags,
        )
