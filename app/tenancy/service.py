"""Operator use cases of tenant traffic configuration: set a plan, set or clear overrides (or
the emergency override), explain the effective policy; and the /ops/tenants/{id} snapshot.

Every change updates the tenants row (`config_updated_at = now()`) and publishes
`tenancy.changed` in the same transaction, so every API process re-reads the tenant when the
change commits (app/tenancy/policies.py), and never for a rolled-back one.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from app.db.fairness import TenantGate
from app.db.uow import UnitOfWorkFactory
from app.flags.rules import Flags
from app.ratelimit.quotas import TenantQuotas
from app.tenancy.policies import CHANGED, TenantPolicies
from app.tenancy.policy import (
    POLICY_FIELDS,
    InvalidOverride,
    TenantPolicy,
    UnknownPlan,
    validate_override,
)
from app.tenancy.repository import Layer, TenantConfigRecord
from app.tenants.service import TenantNotFound
from app.versions import VersionSunset, named
from app.versions.deprecations import Deprecations


@dataclass(frozen=True)
class PolicyExplained:
    """The stored configuration and what it resolves to, value by value with its source."""

    config: TenantConfigRecord
    policy: TenantPolicy

    def lines(self) -> list[tuple[str, Any, str]]:
        return [
            (name, getattr(self.policy, name), self.policy.sources[name]) for name in POLICY_FIELDS
        ]


@dataclass(frozen=True)
class TenantOpsStatus:
    config: TenantConfigRecord
    policy: TenantPolicy  # this process's cached policy (what requests get right now)
    stored: TenantPolicy  # what the database says now (differs only while a change travels)
    database: dict[str, dict[str, int]]  # role -> in_use, waiting, limit, rejected
    # The limiter's view of the tenant's window (None: the service was built without quotas).
    rate_limit: dict[str, Any] | None = field(default=None)
    flags: dict[str, bool] | None = field(default=None)  # the tenant's evaluated flags


class TenancyService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        policies: TenantPolicies,
        gate: TenantGate | None = None,
        quotas: TenantQuotas | None = None,
        flags: Flags | None = None,
        deprecations: Deprecations | None = None,
    ) -> None:
        self._deprecations = deprecations
        self._uow = uow_factory
        self._policies = policies
        self._gate = gate
        self._quotas = quotas
        self._flags = flags

    async def set_plan(self, slug: str, plan: str) -> PolicyExplained:
        if plan not in self._policies.plans:
            known = ", ".join(sorted(self._policies.plans)) or "none configured"
            raise UnknownPlan(f"no plan {plan!r} (plans: {known})")
        async with self._uow() as uow:
            tenant = await self._tenant(uow, slug)
            record = await uow.tenant_config.set_plan(tenant.id, plan)
            assert record is not None
            await uow.invalidations.publish(CHANGED, [str(tenant.id)])
            await uow.commit()
        return self._explained(record)

    async def pin_api_version(self, tenant: uuid.UUID | str, version: str) -> TenantConfigRecord:
        """Pin a tenant (by id, or by slug for operators) to an API version: its requests
        without a `Storefront-Version` header get it, in every process within ~2 s."""
        chosen = named(version)  # 400 api.version_unknown before anything is stored
        if self._deprecations is not None:  # 410 for a version already withdrawn
            self._deprecations.refuse_sunset(self._deprecations.of_version(chosen), VersionSunset)
        async with self._uow() as uow:
            if isinstance(tenant, uuid.UUID):
                found = await uow.tenant_config.get(tenant)
                if found is None:
                    raise TenantNotFound()
            else:
                found = await self._tenant(uow, tenant)
            record = await uow.tenant_config.set_api_version(found.id, version)
            assert record is not None
            await uow.invalidations.publish(CHANGED, [str(found.id)])
            await uow.commit()
        return record

    async def override(
        self,
        slug: str,
        values: dict[str, Any],
        *,
        emergency: bool = False,
        clear: bool = False,
    ) -> PolicyExplained:
        """Set keys of the tenant's overrides (or emergency override). `clear` with no values
        empties the layer; `clear` with values removes just those keys (their values ignored)."""
        layer: Layer = "emergency" if emergency else "overrides"
        if clear:
            unknown = [key for key in values if key not in POLICY_FIELDS]
            if unknown:
                raise InvalidOverride(
                    f"{', '.join(unknown)}: unknown key (known: {', '.join(POLICY_FIELDS)})"
                )
        elif not values:
            raise InvalidOverride("nothing to set: give key=value pairs (or --clear)")
        document = {} if clear else validate_override(values)  # before any write
        async with self._uow() as uow:
            tenant = await self._tenant(uow, slug)
            if clear and not values:
                record = await uow.tenant_config.clear(tenant.id, layer)
            else:
                remove = list(values) if clear else []
                record = await uow.tenant_config.merge(tenant.id, layer, document, remove)
            assert record is not None
            await uow.invalidations.publish(CHANGED, [str(tenant.id)])
            await uow.commit()
        return self._explained(record)

    async def explain(self, slug: str) -> PolicyExplained:
        """The tenant's stored configuration resolved now (read from the primary)."""
        async with self._uow(read_only=True, strong=True) as uow:
            record = await self._tenant(uow, slug)
        return self._explained(record)

    async def status(self, tenant_id: uuid.UUID) -> TenantOpsStatus:
        async with self._uow(read_only=True, strong=True) as uow:
            record = await uow.tenant_config.get(tenant_id)
        if record is None:
            raise TenantNotFound()
        database = {
            role: {"in_use": 0, "waiting": 0, "limit": 0, "rejected": 0}
            for role in ("primary", "replica")
        }
        policy = await self._policies.policy_for(tenant_id)
        for role, figures in database.items():
            figures["limit"] = policy.db_concurrency(role)
        if self._gate is not None:
            for usage in self._gate.usage(tenant_id):
                database[usage.role] = {
                    "in_use": usage.in_use,
                    "waiting": usage.waiting,
                    "limit": usage.limit,
                    "rejected": usage.rejected,
                }
        return TenantOpsStatus(
            config=record,
            policy=policy,
            stored=self._policies.resolve(record),
            database=database,
            rate_limit=await self.rate_limit_usage(tenant_id),
            flags=await self._flags.evaluate_all(tenant_id) if self._flags else None,
        )

    async def rate_limit_usage(self, tenant_id: uuid.UUID) -> dict[str, Any] | None:
        """The tenant's quota windows as the limiter's store sees them (nothing counted):
        shared by every process with Redis, this process's own without."""
        if self._quotas is None:
            return None
        verdicts = await self._quotas.usage(tenant_id)
        return {
            "enabled": self._quotas.enabled,
            "shared": self._quotas.shared,
            "quotas": [
                {
                    "name": verdict.quota.name,
                    "limit": verdict.quota.limit,
                    "window_seconds": verdict.quota.window_seconds,
                    "remaining": verdict.remaining,  # None: the store did not answer
                    "reset_seconds": verdict.reset_seconds,
                }
                for verdict in verdicts
            ],
        }

    def _explained(self, record: TenantConfigRecord) -> PolicyExplained:
        return PolicyExplained(record, self._policies.resolve(record))

    @staticmethod
    async def _tenant(uow: Any, slug: str) -> TenantConfigRecord:
        record: TenantConfigRecord | None = await uow.tenant_config.by_slug(slug)
        if record is None:
            raise TenantNotFound(f"no tenant '{slug}'")
        return record
