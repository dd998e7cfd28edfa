"""Tenant use cases (operator CLI for now; public sign-up arrives with the identity issue)."""

from __future__ import annotations

import re
import uuid

from app.core.errors import Conflict, NotFound, Unprocessable
from app.db.uow import UnitOfWorkFactory
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


class TenantService:
    def __init__(self, uow_factory: UnitOfWorkFactory) -> None:
        self._uow = uow_factory

    async def create(self, slug: str, name: str) -> TenantRecord:
        if not SLUG.match(slug):
            raise InvalidSlug("slug must match [a-z0-9-]{3,40}")
        if not name.strip():
            raise Unprocessable("name must not be empty")
        async with self._uow() as uow:
            tenant = await uow.tenants.add(uuid.uuid4(), slug, name.strip())
            if tenant is None:
                raise SlugTaken(f"tenant '{slug}' already exists")
            await uow.commit()
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
