"""Identity use cases: API keys, users, and the login / refresh / logout flow."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from app.core.clock import Clock
from app.core.errors import Conflict, Forbidden, NotFound, Unauthenticated, Unprocessable
from app.core.pagination import Slice, decode_keyset, keyset_page
from app.core.tasks import flushing
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read, read_fresh
from app.identity import keys
from app.identity.cache import CredentialCache
from app.identity.passwords import PasswordHasher, check_password_policy
from app.identity.permissions import SCOPES, Permission, Role, grantable_scopes, role_permissions
from app.identity.principal import InsufficientPermission, Principal
from app.identity.repository import ApiKeyRecord, UserRecord
from app.identity.revocations import Revocations
from app.identity.throttle import ApiKeyThrottle, LoginLocked, LoginThrottle
from app.identity.tokens import TokenService, hash_refresh

log = structlog.get_logger(__name__)


class InvalidScopes(Unprocessable):
    code = "api_key.invalid_scopes"
    title = "Invalid scopes"


class ApiKeyNotFound(NotFound):
    code = "api_key.not_found"
    title = "API key not found"


class UserNotFound(NotFound):
    code = "user.not_found"
    title = "User not found"


class EmailTaken(Conflict):
    code = "user.email_taken"
    title = "Email already registered"


class LastOwner(Conflict):
    code = "user.last_owner"
    title = "Last owner"


class RotatedKeyMayNotGrant(InsufficientPermission):
    code = "api_key.rotated"
    title = "Rotated API key"


class InvalidCredentials(Unauthenticated):
    code = "auth.invalid_credentials"
    title = "Invalid credentials"


class PasswordLoginDisabled(Forbidden):
    """The tenant signs its staff in through its identity provider only (SSO)."""

    code = "auth.password_login_disabled"
    title = "Password login disabled"


class InvalidRefreshToken(Unauthenticated):
    code = "auth.refresh_invalid"
    title = "Invalid refresh token"


class RefreshTokenReused(Unauthenticated):
    code = "auth.refresh_reused"
    title = "Refresh token reused"


def normalize_email(email: str) -> str:
    """Emails compare case-insensitively: stored and looked up lower-cased."""
    return email.strip().lower()


def _check_role(actor: Principal | None, role: Role) -> None:
    """Giving a role, or controlling an account of that role (its password), needs every
    permission of the role: an admin cannot make owners, a key with `users:manage` alone cannot
    make users who could do more than it can."""
    if actor is None:
        return
    if not role_permissions(role) <= actor.permissions:
        raise InsufficientPermission(f"you may not grant or control the {role.name} role")


def _check_grant(granter: Principal | None, scopes: list[str]) -> None:
    """No one mints a key stronger than themselves (None: the operator CLI), and a key that
    was rotated (still valid for its grace period) mints none: whoever still holds the old
    secret must not be able to keep a credential alive past the rotation."""
    if granter is None:
        return
    if granter.rotated:
        raise RotatedKeyMayNotGrant("a rotated API key may not issue, rotate or revoke keys")
    beyond = sorted(set(scopes) - grantable_scopes(granter.permissions))
    if beyond:
        raise InsufficientPermission(f"you may not grant: {', '.join(beyond)}")


class ApiKeyUsage:
    """`last_used_at` without a write per request: uses are noted in memory and written in one
    UPDATE per tenant every `auth.api_key_usage_flush_seconds` (so it is that coarse)."""

    def __init__(self, uow_factory: UnitOfWorkFactory, clock: Clock) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._pending: dict[uuid.UUID, set[uuid.UUID]] = {}

    def seen(self, principal: Principal) -> None:
        self._pending.setdefault(principal.tenant_id, set()).add(principal.id)

    async def flush(self) -> None:
        pending, self._pending = self._pending, {}
        at = self._clock.now()
        for tenant_id, key_ids in pending.items():
            try:
                async with self._uow(tenant_id) as uow:
                    await uow.api_keys.touch(sorted(key_ids), at)
                    await uow.commit()
            except Exception as error:  # keep them for the next flush
                log.warning("api_keys.usage_flush_failed", error=repr(error))
                self._pending.setdefault(tenant_id, set()).update(key_ids)


async def api_key_usage_flusher(usage: ApiKeyUsage, interval: float) -> AsyncIterator[None]:
    """Resource: flushes `last_used_at` every `interval` seconds, and once more on shutdown."""
    async with flushing(usage.flush, interval, "api-key-usage-flusher"):
        yield


class ApiKeyService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        cache: CredentialCache,
        usage: ApiKeyUsage,
        rotation_grace_seconds: int,
        revocations: Revocations,
        throttle: ApiKeyThrottle,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._cache = cache
        self._usage = usage
        self._grace = rotation_grace_seconds
        self._revocations = revocations
        self._throttle = throttle

    async def issue(
        self,
        tenant_id: uuid.UUID,
        name: str,
        scopes: list[str],
        expires_in_days: int | None = None,
        granter: Principal | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        unknown = sorted(set(scopes) - SCOPES)
        if unknown or not scopes:
            raise InvalidScopes(f"unknown or empty scopes: {', '.join(unknown) or '(none)'}")
        _check_grant(granter, scopes)
        expires_at = None
        if expires_in_days is not None:
            expires_at = self._clock.now() + timedelta(days=expires_in_days)
        async with self._uow(tenant_id) as uow:
            record, secret = await self._add(uow, name, sorted(set(scopes)), expires_at)
            await uow.commit()
        return record, secret

    @staticmethod
    async def _add(
        uow: UnitOfWork, name: str, scopes: list[str], expires_at: datetime | None
    ) -> tuple[ApiKeyRecord, str]:
        secret = keys.new_secret()
        record = await uow.api_keys.add(
            uuid.uuid4(),
            name,
            secret[: keys.DISPLAY_LENGTH],
            keys.hash_secret(secret),
            scopes,
            expires_at,
        )
        return record, secret

    async def authenticate(self, secret: str, client_ip: str | None = None) -> Principal:
        """`client_ip` (None: not over HTTP) is throttled on failed lookups: past
        `auth.api_key_failures_per_ip` in a window its uncached keys get 429 before any lookup,
        unless the key authenticated here within the hour (then it is looked up as usual, so
        revocation still applies). A cached key costs no throttle check."""
        digest = keys.hash_secret(secret)
        principal = self._cache.api_keys.get(digest)  # a hit was well formed when cached
        if principal is None:
            if client_ip is not None and self._cache.recent_api_keys.get(digest) is None:
                self._throttle.check(client_ip)
            if not keys.well_formed(secret):  # typos and garbage: no lookup at all
                raise Unauthenticated("invalid API key")

            async def by_digest(uow: UnitOfWork) -> ApiKeyRecord | None:
                return await uow.api_keys.by_secret_hash(digest)

            record = await read_fresh(self._uow, None, by_digest)
            if record is not None and self._cache.changed_here(record.id):  # rotated here
                record = await read_fresh(self._uow, None, by_digest, primary_only=True)
            if record is None or record.revoked_at is not None or self._cache.is_revoked(record.id):
                if client_ip is not None:
                    await self._throttle.failed(client_ip)
                raise Unauthenticated("invalid API key")
            principal = Principal(
                kind="api_key",
                id=record.id,
                tenant_id=record.tenant_id,
                scopes=frozenset(record.scopes),
                expires_at=record.expires_at,
                rotated=record.rotated_at is not None,
            )
            self._cache.api_keys.put(digest, principal)
            self._cache.recent_api_keys.put(digest, principal)
        if principal.expires_at is not None and principal.expires_at <= self._clock.now():
            raise Unauthenticated("API key expired")
        self._usage.seen(principal)
        return principal

    async def list(
        self, tenant_id: uuid.UUID, limit: int = 100, cursor: str | None = None
    ) -> Slice[ApiKeyRecord]:
        after = decode_keyset(cursor)
        rows = await read(self._uow, tenant_id, lambda uow: uow.api_keys.page(limit, after))
        return keyset_page(rows, limit)

    async def rotate(
        self,
        tenant_id: uuid.UUID,
        key_id: uuid.UUID,
        grace_seconds: int | None = None,
        granter: Principal | None = None,
    ) -> tuple[ApiKeyRecord, str]:
        """A new secret with the same name, scopes and expiry; the old secret keeps working
        for the grace period (default `auth.api_key_rotation_grace_seconds`), then expires."""
        now = self._clock.now()
        grace = timedelta(seconds=self._grace if grace_seconds is None else grace_seconds)
        async with self._uow(tenant_id) as uow:
            old = await uow.api_keys.get(key_id, lock=True)
            if old is None or old.revoked_at is not None:
                raise ApiKeyNotFound()
            _check_grant(granter, old.scopes)
            record, secret = await self._add(uow, old.name, old.scopes, old.expires_at)
            await uow.api_keys.expire(key_id, now + grace, now)
            await self._revocations.api_key_changed(uow, key_id)
            await uow.commit()
        self._cache.forget_api_key(key_id)
        return record, secret

    async def revoke(
        self, tenant_id: uuid.UUID, key_id: uuid.UUID, granter: Principal | None = None
    ) -> None:
        """A rotated key (still in its grace period) revokes nothing: its leaked secret must
        not lock out the key that replaced it."""
        if granter is not None and granter.rotated:
            raise RotatedKeyMayNotGrant("a rotated API key may not issue, rotate or revoke keys")
        async with self._uow(tenant_id) as uow:
            if not await uow.api_keys.revoke(key_id, self._clock.now()):
                raise ApiKeyNotFound()
            await self._revocations.record(uow, [key_id])
            await uow.commit()
        self._cache.revoke(key_id)


class UserService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        hasher: PasswordHasher,
        cache: CredentialCache,
        revocations: Revocations,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._hasher = hasher
        self._cache = cache
        self._revocations = revocations

    async def get(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> UserRecord:
        user = await read_fresh(self._uow, tenant_id, lambda uow: uow.users.get(user_id))
        if user is None:
            raise UserNotFound()
        return user

    async def list(self, tenant_id: uuid.UUID, limit: int, cursor: str | None) -> Slice[UserRecord]:
        after = decode_keyset(cursor)
        rows = await read(self._uow, tenant_id, lambda uow: uow.users.page(limit, after))
        return keyset_page(rows, limit)

    async def create(
        self,
        tenant_id: uuid.UUID,
        email: str,
        password: str,
        role: Role,
        actor: Principal | None = None,
    ) -> UserRecord:
        """`actor` None: the operator CLI."""
        _check_role(actor, role)
        check_password_policy(password)
        password_hash = await self._hasher.hash(password)
        async with self._uow(tenant_id) as uow:
            user = await uow.users.add(
                uuid.uuid4(), normalize_email(email), password_hash, role.name
            )
            if user is None:
                raise EmailTaken("a user with this email already exists")
            await uow.commit()
        return user

    async def update(
        self,
        actor: Principal,
        user_id: uuid.UUID,
        role: Role | None = None,
        password: str | None = None,
    ) -> UserRecord:
        password_hash = None
        if password is not None:
            check_password_policy(password)
            password_hash = await self._hasher.hash(password)
        async with self._uow(actor.tenant_id) as uow:
            owners = await uow.users.lock_owners()
            target = await uow.users.get(user_id, lock=True)
            if target is None:
                raise UserNotFound()
            # Changing a user (role or password) is controlling their account: the actor needs
            # every permission of the user's role, and of the new role.
            _check_role(actor, Role[target.role])
            if role is not None:
                _check_role(actor, role)
            if role is not None and role is not Role.owner and target.role == Role.owner.name:
                self._check_not_last(target, owners)
            user = await uow.users.update(
                user_id, self._clock.now(), role.name if role else None, password_hash
            )
            ended: list[uuid.UUID] = []
            if password_hash is not None:  # a new password ends every session of the user
                ended = await uow.refresh_tokens.revoke_user(user_id, self._clock.now())
                await self._revocations.record(uow, ended)
            await self._revocations.user_changed(uow, user_id)
            await uow.commit()
        assert user is not None  # locked above
        self._cache.forget_user(user_id)
        self._cache.revoke(*ended)
        return user

    async def delete(self, actor: Principal, user_id: uuid.UUID) -> None:
        async with self._uow(actor.tenant_id) as uow:
            owners = await uow.users.lock_owners()
            target = await uow.users.get(user_id, lock=True)
            if target is None:
                raise UserNotFound()
            if target.role == Role.owner.name:
                actor.require(Permission.OWNERSHIP_TRANSFER)
                self._check_not_last(target, owners)
            await uow.users.delete(user_id)
            await self._revocations.record(uow, [user_id])
            await uow.commit()
        self._cache.revoke(user_id)

    @staticmethod
    def _check_not_last(owner: UserRecord, owners: Sequence[uuid.UUID]) -> None:
        if list(owners) == [owner.id]:
            raise LastOwner("the last owner cannot be demoted or removed; make another owner first")


# An email has at most one account per tenant; an unlock reads this many of them at most.
UNLOCK_MAX_ACCOUNTS = 10_000


@dataclass(frozen=True, slots=True)
class Unlocked:
    """What `AuthService.unlock` cleared. `shared` False: the counts live in each API
    process's memory (no `redis.url`), so nothing outside those processes can clear them."""

    shared: bool
    accounts: int = 0
    addresses: int = 0


@dataclass(frozen=True, slots=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int


# Tenant-less logins verify this many candidate accounts (the oldest of the email): a victim's
# account stays reachable when someone registers the same address in another tenant later.
TENANTLESS_CANDIDATES = 2


class AuthService:
    """Password login, refresh-token rotation with reuse detection, logout."""

    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        hasher: PasswordHasher,
        tokens: TokenService,
        throttle: LoginThrottle,
        cache: CredentialCache,
        on_event: Callable[[str], None],
        revocations: Revocations,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._hasher = hasher
        self._tokens = tokens
        self._throttle = throttle
        self._cache = cache
        self._event = on_event  # counts login_failed, login_locked, refresh_reused
        self._revocations = revocations

    async def login(
        self, email: str, password: str, client_ip: str, tenant: str | None = None
    ) -> TokenPair:
        """`tenant` (a slug) names the account; then one candidate and one verification.
        Without it, the `TENANTLESS_CANDIDATES` oldest accounts of the email are candidates and
        exactly that many verifications run (padded with the dummy hash), whatever exists:
        success iff exactly one candidate's password matches. So a later account under the same
        address (someone registering the victim's email in a tenant of their own) neither
        breaks the victim's tenant-less login nor tells its owner, by answer or by time,
        whether the address exists elsewhere. No match, or several: the same 401.

        A client address over its limit is refused before the credentials lookup."""
        email = normalize_email(email)
        try:
            await self._throttle.attempt_from(client_ip)
        except LoginLocked:
            self._event("login_locked")
            raise
        wanted = 1 if tenant is not None else TENANTLESS_CANDIDATES
        async with self._uow(read_only=True, strong=True) as uow:
            candidates = await uow.users.credentials(email, tenant, limit=wanted)
        # Counted per account (each candidate's; with none, the (email, tenant) asked for).
        # Not per email: with an account of their own under the same address, an attacker's
        # successful logins would otherwise clear the victim's count.
        accounts = [f"user:{c.user_id}" for c in candidates] or [f"email:{email}\0{tenant or ''}"]
        try:
            await self._throttle.reserve(accounts)
        except LoginLocked:
            self._event("login_locked")
            raise
        try:
            hashes: list[str | None] = [c.password_hash for c in candidates]
            hashes += [None] * (wanted - len(hashes))  # dummy verifications: the same work
            verdicts = await asyncio.gather(*(self._hasher.verify(password, h) for h in hashes))
            matched = [(c, new) for c, (ok, new) in zip(candidates, verdicts, strict=False) if ok]
            if len(matched) != 1:
                self._event("login_failed")
                await self._throttle.failed(client_ip, accounts)
                raise InvalidCredentials("wrong email or password")
            await self._throttle.succeeded(f"user:{matched[0][0].user_id}")
        finally:
            self._throttle.release(accounts)
        found, new_hash = matched[0]
        # Asked only of the right password, so it reveals nothing to anyone else.
        async with self._uow(found.tenant_id, read_only=True, strong=True) as uow:
            if await uow.sso.password_login_disabled():
                raise PasswordLoginDisabled(
                    "this tenant signs in with its identity provider: GET"
                    " /v1/auth/sso/{tenant}/start"
                )
        async with self._uow(found.tenant_id) as uow:
            # Locked, and still the hash that was verified: a password change or deletion that
            # committed meanwhile wins (the same 401); one that comes later waits for this
            # transaction and then ends the session it issues.
            if await uow.users.lock_password_hash(found.user_id) != found.password_hash:
                self._event("login_failed")
                raise InvalidCredentials("wrong email or password")
            if new_hash is not None:  # legacy bcrypt (or weaker argon2 params): upgrade now
                await uow.users.set_password_hash(found.user_id, new_hash)
            pair = await self.issue_session(uow, found.user_id, found.tenant_id, Role[found.role])
            await uow.commit()
        return pair

    async def unlock(
        self, email: str | None = None, address: str | None = None, tenant: str | None = None
    ) -> Unlocked:
        """Clear the login lockout of an email (its accounts in every tenant, or in `tenant`)
        and of a client address (as the login counts it: the HTTP edge's throttle bucket)."""
        if not self._throttle.shared:
            return Unlocked(shared=False)
        accounts: list[str] = []
        if email is not None:
            email = normalize_email(email)
            async with self._uow(read_only=True, strong=True) as uow:
                found = await uow.users.credentials(email, tenant, limit=UNLOCK_MAX_ACCOUNTS)
            accounts = [f"user:{c.user_id}" for c in found]
        # A login that matched no account counts on the email and the tenant it named.
        unknown = [f"email:{email}\0{tenant or ''}"] if email is not None else []
        addresses = [address] if address is not None else []
        await self._throttle.clear([*accounts, *unknown], addresses)
        return Unlocked(shared=True, accounts=len(accounts), addresses=len(addresses))

    async def refresh(self, refresh_token: str) -> TokenPair:
        now = self._clock.now()
        async with self._uow(read_only=True, strong=True) as uow:
            token = await uow.refresh_tokens.by_hash(hash_refresh(refresh_token))
        if token is None:
            raise InvalidRefreshToken("unknown refresh token")
        async with self._uow(token.tenant_id) as uow:
            # Locked first: a concurrent password change (which locks the user too) then either
            # sees this refresh's new token and revokes it, or runs before and revokes this one.
            user = await uow.users.get(token.user_id, lock=True)
            if user is None:
                raise InvalidRefreshToken("the user no longer exists")
            if not await uow.refresh_tokens.use(token.id, now):
                # Read again under the user lock: a logout that committed while this refresh
                # waited for the lock revoked the token (a plain 401, not a reuse).
                current = await uow.refresh_tokens.by_hash(hash_refresh(refresh_token))
                token = current or token
                if current is None or token.revoked_at is not None or token.expires_at <= now:
                    raise InvalidRefreshToken("this refresh token has expired or was revoked")
                # Used before: a stolen copy is being replayed (or the owner's client raced
                # itself). Either way the family is no longer trustworthy.
                await uow.refresh_tokens.revoke_family(token.family_id, now)
                await self._revocations.record(uow, [token.family_id])
                await uow.commit()
                self._cache.revoke(token.family_id)
                self._event("refresh_reused")
                log.warning("auth.refresh_reused", user=str(token.user_id))
                raise RefreshTokenReused("refresh token reused; the session was revoked")
            pair = await self.issue_session(
                uow, user.id, user.tenant_id, Role[user.role], family_id=token.family_id
            )
            await uow.commit()
        return pair

    async def logout(self, refresh_token: str) -> None:
        """Revoke the token's whole family; unknown tokens are ignored (nothing to end)."""
        async with self._uow(read_only=True, strong=True) as uow:
            token = await uow.refresh_tokens.by_hash(hash_refresh(refresh_token))
        if token is None:
            return
        async with self._uow(token.tenant_id) as uow:
            # The user row first, as refresh does: a concurrent refresh of this family then
            # either committed its new token before (and this UPDATE sees and revokes it) or
            # waits and finds its token revoked (401). Without the lock, READ COMMITTED let a
            # token inserted meanwhile survive the logout.
            await uow.users.get(token.user_id, lock=True)
            await uow.refresh_tokens.revoke_family(token.family_id, self._clock.now())
            await self._revocations.record(uow, [token.family_id])
            await uow.commit()
        self._cache.revoke(token.family_id)

    async def issue_session(
        self,
        uow: UnitOfWork,
        user_id: uuid.UUID,
        tenant_id: uuid.UUID,
        role: Role,
        family_id: uuid.UUID | None = None,
    ) -> TokenPair:
        """A session in the caller's unit of work: a refresh token (a new family unless given)
        and an access token. Password login, refresh and SSO login all end here."""
        family_id = family_id or uuid.uuid4()
        secret, digest = self._tokens.new_refresh()
        expires_at = self._clock.now() + timedelta(
            seconds=self._tokens.settings.refresh_ttl_seconds
        )
        await uow.refresh_tokens.add(user_id, family_id, digest, expires_at)
        access = self._tokens.issue_access(user_id, tenant_id, role, family_id)
        return TokenPair(access, secret, self._tokens.settings.access_ttl_seconds)
