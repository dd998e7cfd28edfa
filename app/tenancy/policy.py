"""A tenant's effective traffic policy and how it is resolved.

Layers, lowest first: `tenancy.defaults` (settings) < the tenant's plan (`plans.<name>`) <
the tenant's overrides (`tenants.overrides`) < the emergency operator override
(`tenants.emergency`). Each value of the result remembers which layer it came from.

Override documents are validated before they are stored (`validate_override`: unknown keys and
bad values are a clear error); a stored document that no longer validates (edited by hand, or a
field renamed) is read key by key and its bad keys are ignored with a warning, never a failure.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.core.errors import Unprocessable
from app.settings import MAX_QUOTA, PlanSettings, PolicyDefaults

log = structlog.get_logger(__name__)

# The policy's fields, in display order (PolicyDefaults is the source of truth).
POLICY_FIELDS: tuple[str, ...] = tuple(PolicyDefaults.model_fields)


class InvalidOverride(Unprocessable):
    code = "tenancy.invalid_override"
    title = "Invalid tenant override"


class UnknownPlan(Unprocessable):
    code = "tenancy.unknown_plan"
    title = "Unknown plan"


class PolicyOverride(BaseModel):
    """What an override (or emergency override) may set: any policy field, nothing else."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests_per_window: int | None = Field(None, ge=0, le=MAX_QUOTA)
    window_seconds: int | None = Field(None, ge=1, le=MAX_QUOTA)
    burst: int | None = Field(None, ge=0, le=MAX_QUOTA)
    per_api_key: bool | None = None
    db_concurrency_primary: int | None = Field(None, ge=0)
    db_concurrency_replica: int | None = Field(None, ge=0)


@dataclass(frozen=True, slots=True)
class TenantPolicy:
    """The effective values for one tenant. Built once per change, read on every request."""

    tenant_id: uuid.UUID
    plan: str
    requests_per_window: int
    window_seconds: int
    burst: int
    per_api_key: bool
    db_concurrency_primary: int
    db_concurrency_replica: int
    # field -> "defaults" | "plan:<name>" | "override" | "emergency"
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)
    plan_known: bool = True
    api_version: str | None = None  # not a traffic value: the tenant's pinned API version

    def db_concurrency(self, role: str) -> int:
        return self.db_concurrency_primary if role == "primary" else self.db_concurrency_replica

    def values(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in POLICY_FIELDS}


def validate_override(values: Mapping[str, Any]) -> dict[str, Any]:
    """The document to store, or InvalidOverride naming every bad key."""
    try:
        model = PolicyOverride.model_validate(dict(values))
    except ValidationError as error:
        problems = []
        for item in error.errors():
            key = ".".join(str(p) for p in item["loc"]) or "override"
            if item["type"] == "extra_forbidden":
                problems.append(f"{key}: unknown key (known: {', '.join(POLICY_FIELDS)})")
            else:
                problems.append(f"{key}: {item['msg']}")
        raise InvalidOverride("; ".join(problems)) from None
    return model.model_dump(exclude_none=True)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """`key=value` words (CLI) -> a dict; the values are validated by validate_override."""
    parsed: dict[str, str] = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InvalidOverride(f"{item!r}: expected key=value")
        parsed[key.strip()] = value.strip()
    return parsed


def _stored(document: Any, tenant_id: uuid.UUID, layer: str) -> dict[str, Any]:
    """A stored override, key by key: what validates is used, the rest is logged and ignored."""
    if not isinstance(document, Mapping):
        if document:
            log.warning("tenancy.bad_override", tenant_id=str(tenant_id), layer=layer)
        return {}
    kept: dict[str, Any] = {}
    for key, value in document.items():
        try:
            kept |= PolicyOverride.model_validate({key: value}).model_dump(exclude_none=True)
        except ValidationError:
            log.warning("tenancy.bad_override_key", tenant_id=str(tenant_id), layer=layer, key=key)
    return kept


def resolve(
    tenant_id: uuid.UUID,
    plan: str,
    overrides: Any,
    emergency: Any,
    *,
    defaults: PolicyDefaults,
    plans: Mapping[str, PlanSettings],
) -> TenantPolicy:
    """defaults < plan < overrides < emergency; a plan not in settings counts as empty."""
    values: dict[str, Any] = defaults.model_dump()
    sources = dict.fromkeys(values, "defaults")
    plan_settings = plans.get(plan)
    layers: list[tuple[str, Mapping[str, Any]]] = []
    if plan_settings is not None:
        layers.append((f"plan:{plan}", plan_settings.model_dump(exclude_none=True)))
    layers.append(("override", _stored(overrides, tenant_id, "override")))
    layers.append(("emergency", _stored(emergency, tenant_id, "emergency")))
    for source, layer in layers:
        for key, value in layer.items():
            values[key] = value
            sources[key] = source
    return TenantPolicy(
        tenant_id=tenant_id,
        plan=plan,
        sources=sources,
        plan_known=plan_settings is not None,
        **values,
    )
