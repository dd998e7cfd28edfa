"""Credentials -> Principal, on the hot path of every request (see app/identity/cache.py for
what is trusted without a database round trip, and for how long)."""

from __future__ import annotations

import uuid

from app.core.clock import Clock
from app.core.errors import Unauthenticated
from app.db.uow import UnitOfWorkFactory, read_fresh
from app.identity.cache import CredentialCache
from app.identity.permissions import Role
from app.identity.principal import Principal
from app.identity.service import ApiKeyService
from app.identity.tokens import InvalidToken, TokenService


class Authenticator:
    def __init__(
        self,
        api_keys: ApiKeyService,
        tokens: TokenService,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        cache: CredentialCache,
    ) -> None:
        self._api_keys = api_keys
        self._tokens = tokens
        self._uow = uow_factory
        self._clock = clock
        self._cache = cache

    async def api_key(self, secret: str, client_ip: str | None = None) -> Principal:
        return await self._api_keys.authenticate(secret, client_ip)

    async def bearer(self, token: str) -> Principal:
        claims = self._cache.tokens.get(token)
        if claims is None:
            claims = self._tokens.verify_access(token)
            left = claims.expires_at - self._clock.now().timestamp()
            self._cache.tokens.put(token, claims, ttl=left)
        elif claims.expires_at <= self._clock.now().timestamp():
            raise InvalidToken("the token has expired")
        if self._cache.is_revoked(claims.family_id) or self._cache.is_revoked(claims.user_id):
            raise InvalidToken("the session has ended")
        # The role is the user's current one (a demotion applies within the cache TTL), not the
        # one the token was issued with.
        role = await self._current_role(claims.tenant_id, claims.user_id)
        if role is None:
            raise Unauthenticated("the token's user no longer exists")
        return Principal(kind="user", id=claims.user_id, tenant_id=claims.tenant_id, role=role)

    async def _current_role(self, tenant_id: uuid.UUID, user_id: uuid.UUID) -> Role | None:
        """By (tenant, user): the read is scoped to the token's tenant (and RLS), so a token
        whose `tid` is not the user's tenant finds no user, cached or not."""
        key = (tenant_id, user_id)
        cached = self._cache.user_roles.get(key)
        if cached is not None:
            return Role[cached] if cached else None
        user = await read_fresh(
            self._uow,
            tenant_id,
            lambda uow: uow.users.get(user_id),
            primary_only=self._cache.changed_here(user_id),
        )
        role = user.role if user else ""
        self._cache.user_roles.put(key, role)
        return Role[role] if role else None
