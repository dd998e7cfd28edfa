"""Tenant use cases: public sign-up (tenant + owner in one transaction) and operator commands."""

from __future__ import annotations

import re
import uuid

from app.core.errors import Conflict, NotFound, Unprocessable
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read_fresh
from app.identity.passwords import PasswordHasher, check_password_policy
from app.identity.permissions import Role
from app.identity.repository import UserRecord
from app.identity.service import EmailTaken, normalize_email
from app.tenants.repository import TenantRecord

SLUG = re.compile(r"^[a-z0-9-]{3,40}$")


class InvalidSlug(Unprocessable):
    code = "tenant.invalid_slug"
    title = "Invalid tenant slug"


class SlugTaken(Conflict):
    code = "tenant.slug_taken"
    title = "Tenant slug taken"


class TenantNotFound(NotFound):
    code = "tenant.not_found"
    title = "Tenant not found"


class SignupDisabled(NotFound):
    """Looks exactly like an unknown route."""

    code = "route.not_found"
    title = "Not Found"


class TenantService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, hasher: PasswordHasher, signup_enabled: bool
    ) -> None:
        self._uow = uow_factory
        self._hasher = hasher
        self._signup_enabled = signup_enabled

    async def create(self, slug: str, name: str) -> TenantRecord:
        """Operator path (CLI): a tenant without users."""
        _check(slug, name)
        async with self._uow() as uow:
            tenant = await self._add(uow, slug, name)
            await uow.commit()
        return tenant

    async def sign_up(
        self, slug: str, name: str, email: str, password: str
    ) -> tuple[TenantRecord, UserRecord]:
        """Public sign-up: the tenant and its owner commit together or not at all."""
        if not self._signup_enabled:
            raise SignupDisabled("not found")
        _check(slug, name)
        check_password_policy(password)
        password_hash = await self._hasher.hash(password)
        tenant_id = uuid.uuid4()
        async with self._uow(tenant_id) as uow:
            tenant = await self._add(uow, slug, name, tenant_id)
            owner = await uow.users.add(
                uuid.uuid4(), normalize_email(email), password_hash, Role.owner.name
            )
            if owner is None:
                raise EmailTaken("a user with this email already exists")
            await uow.commit()
        return tenant, owner

    @staticmethod
    async def _add(
        uow: UnitOfWork, slug: str, name: str, tenant_id: uuid.UUID | None = None
    ) -> TenantRecord:
        tenant = await uow.tenants.add(tenant_id or uuid.uuid4(), slug, name.strip())
        if tenant is None:
            raise SlugTaken(f"tenant '{slug}' already exists")
        return tenant

    async def get(self, tenant_id: uuid.UUID) -> TenantRecord:
        tenant = await read_fresh(self._uow, None, lambda uow: uow.tenants.get(tenant_id))
        if tenant is None:
            raise TenantNotFound()
        return tenant

    async def by_slug(self, slug: str) -> TenantRecord:
        async with self._uow(read_only=True) as uow:
            tenant = await uow.tenants.by_slug(slug)
        if tenant is None:
            raise TenantNotFound(f"no tenant '{slug}'")
        return tenant

    async def list(self) -> list[TenantRecord]:
        async with self._uow(read_only=True) as uow:
            return await uow.tenants.list()


def _check(slug: str, name: str) -> None:
    if not SLUG.match(slug):
        raise InvalidSlug("slug must match [a-z0-9-]{3,40}")
    if not name.strip():
        raise Unprocessable("name must not be empty")
