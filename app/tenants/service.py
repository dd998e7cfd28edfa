"""Tenant use cases: public sign-up (tenant + owner in one transaction, limited per client
address) and operator commands."""

from __future__ import annotations

import re
import uuid

from app.core.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read, read_fresh
from app.identity.passwords import PasswordHasher, check_password_policy
from app.identity.permissions import Role
from app.identity.repository import UserRecord
from app.identity.service import normalize_email
from app.ratelimit.limiter import Quota, RateLimiter
from app.settings import SignupLimitSettings
from app.tenants.repository import TenantRecord
from app.versions import NEWEST

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


class SignupLimited(TooManyRequests):
    code = "tenant.signup_limited"
    title = "Too many sign-ups"


class SignupLimit:
    """Sign-up attempts per client address in a sliding window (`auth.signup_limit`), counted on
    the rate limiter: in Redis when `redis.url` is set (one count for every process), this
    process's memory otherwise. Every attempt counts, successful or not: each one is a new
    tenant, or a probe."""

    def __init__(self, limiter: RateLimiter, settings: SignupLimitSettings) -> None:
        self._limiter = limiter
        self._quota = Quota("signup", settings.max_per_ip, settings.window_seconds)

    async def attempt(self, client_ip: str) -> None:
        """Count this attempt; refuse it (429) when it goes past the limit."""
        verdict = await self._limiter.count(client_ip, self._quota)
        if not verdict.allowed:
            raise SignupLimited(
                "too many sign-ups from this address; try again later",
                retry_after=verdict.reset_seconds,
            )


class TenantService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        hasher: PasswordHasher,
        signup_enabled: bool,
        signup_limit: SignupLimit,
    ) -> None:
        self._uow = uow_factory
        self._hasher = hasher
        self._signup_enabled = signup_enabled
        self._signup_limit = signup_limit

    async def create(self, slug: str, name: str) -> TenantRecord:
        """Operator path (CLI): a tenant without users."""
        _check(slug, name)
        async with self._uow() as uow:
            tenant = await self._add(uow, slug, name)
            await uow.commit()
        return tenant

    async def sign_up(
        self, slug: str, name: str, email: str, password: str, client_ip: str
    ) -> tuple[TenantRecord, UserRecord]:
        """Public sign-up: the tenant and its owner commit together or not at all. The owner's
        email is new in its (new) tenant, so it cannot be taken: emails are unique per tenant,
        and sign-up reveals nothing about addresses registered in other tenants."""
        if not self._signup_enabled:
            raise SignupDisabled("not found")
        await self._signup_limit.attempt(client_ip)
        _check(slug, name)
        check_password_policy(password)
        password_hash = await self._hasher.hash(password)
        tenant_id = uuid.uuid4()
        async with self._uow(tenant_id) as uow:
            tenant = await self._add(uow, slug, name, tenant_id)
            owner = await uow.users.add(
                uuid.uuid4(), normalize_email(email), password_hash, Role.owner.name
            )
            # Emails are unique per tenant and this tenant is new: the insert cannot conflict.
            assert owner is not None
            await uow.commit()
        return tenant, owner

    @staticmethod
    async def _add(
        uow: UnitOfWork, slug: str, name: str, tenant_id: uuid.UUID | None = None
    ) -> TenantRecord:
        # A new tenant is pinned to the newest API version (app/versions).
        tenant = await uow.tenants.add(tenant_id or uuid.uuid4(), slug, name.strip(), NEWEST.name)
        if tenant is None:
            raise SlugTaken(f"tenant '{slug}' already exists")
        return tenant

    async def get(self, tenant_id: uuid.UUID) -> TenantRecord:
        tenant = await read_fresh(self._uow, None, lambda uow: uow.tenants.get(tenant_id))
        if tenant is None:
            raise TenantNotFound()
        return tenant

    async def by_slug(self, slug: str) -> TenantRecord:
        tenant = await read(self._uow, None, lambda uow: uow.tenants.by_slug(slug))
        if tenant is None:
            raise TenantNotFound(f"no tenant '{slug}'")
        return tenant

    async def list(self) -> list[TenantRecord]:
        return await read(self._uow, None, lambda uow: uow.tenants.list())


def _check(slug: str, name: str) -> None:
    if not SLUG.match(slug):
        raise InvalidSlug("slug must match [a-z0-9-]{3,40}")
    if not name.strip():
        raise Unprocessable("name must not be empty")
