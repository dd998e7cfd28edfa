"""SSO use cases: the owner's configuration of the tenant's provider, and the login
(`start` -> provider -> `callback`) that ends in the same session a password login starts.

A login in flight is a row (`sso_logins`) found by the hash of its `state` and bound to the
browser by the hash of a cookie value the browser keeps (`binding`); the callback deletes it
in the statement that finds it, so `state`, `nonce` and the PKCE verifier are used once.
`state` starts with the tenant's id (hex), so the callback knows the tenant before any lookup
and every query stays under row-level security.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import structlog
from pydantic import SecretStr

from app.core.clock import Clock
from app.db.uow import UnitOfWork, UnitOfWorkFactory, read_fresh
from app.identity.passwords import PasswordHasher
from app.identity.permissions import Role
from app.identity.service import AuthService, TokenPair
from app.secrets.box import SecretBox
from app.settings import SsoSettings
from app.sso.errors import (
    IdTokenInvalid,
    SsoAccountLinked,
    SsoConfigInvalid,
    SsoEmailDomain,
    SsoEmailInvalid,
    SsoEmailUnverified,
    SsoNoAccount,
    SsoNotConfigured,
    SsoProviderRefused,
    SsoResponseIssuerMismatch,
    SsoServerNotConfigured,
    SsoStateInvalid,
)
from app.sso.oidc import OidcClient, authorization_url, error_code, url_problem
from app.sso.repository import SsoConfigRecord, SsoLoginRecord

log = structlog.get_logger(__name__)
# A plain address: an unquoted ASCII local part, one `@`, a domain name of ASCII labels.
_EMAIL = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}",
    re.ASCII,
)
CLIENT_SECRET = "sso_client_secret"  # its name in tenant_secrets
SSO_ROLES = (Role.viewer, Role.member, Role.admin)  # a default role; never owner


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode()).digest()


@dataclass(frozen=True, slots=True)
class SsoConfigInput:
    issuer: str
    client_id: str
    allowed_domains: list[str]
    default_role: Role
    jit_provisioning: bool
    password_login_disabled: bool


@dataclass(frozen=True, slots=True)
class SsoConfigInfo:
    """What may be shown of a configuration: never the client secret."""

    config: SsoConfigRecord
    redirect_uri: str | None
    tenant_slug: str

    @property
    def login_url(self) -> str:
        return f"/v1/auth/sso/{self.tenant_slug}/start"


class SsoConfigService:
    def __init__(
        self, uow_factory: UnitOfWorkFactory, box: SecretBox, clock: Clock, settings: SsoSettings
    ) -> None:
        self._uow = uow_factory
        self._box = box
        self._clock = clock
        self._settings = settings

    async def put(
        self, tenant_id: uuid.UUID, given: SsoConfigInput, client_secret: SecretStr | None
    ) -> SsoConfigInfo:
        """Replace the configuration; `client_secret` None keeps the stored one."""
        problem = url_problem(given.issuer, self._settings)
        if problem is not None or urlsplit(given.issuer).query:
            raise SsoConfigInvalid(f"the issuer {problem or 'must not have a query'}")
        if given.default_role not in SSO_ROLES:
            raise SsoConfigInvalid("new users cannot be made owners by their provider")
        ciphertext = self._box.encrypt(client_secret) if client_secret is not None else None
        domains = sorted({domain.lower() for domain in given.allowed_domains})
        now = self._clock.now()
        async with self._uow(tenant_id) as uow:
            if ciphertext is not None:
                await uow.tenant_secrets.put(CLIENT_SECRET, ciphertext, now)
            elif await uow.tenant_secrets.get(CLIENT_SECRET) is None:
                raise SsoConfigInvalid("client_secret is required the first time")
            record = await uow.sso.put_config(
                given.issuer,
                given.client_id,
                domains,
                given.default_role.name,
                given.jit_provisioning,
                given.password_login_disabled,
                now,
            )
            tenant = await uow.tenants.get(tenant_id)
            await uow.commit()
        log.info("sso.configured", tenant=str(tenant_id), issuer=given.issuer)
        assert tenant is not None  # the caller's own tenant
        return SsoConfigInfo(record, self._settings.redirect_uri, tenant.slug)

    async def get(self, tenant_id: uuid.UUID) -> SsoConfigInfo:
        record = await read_fresh(self._uow, tenant_id, lambda uow: uow.sso.config())
        if record is None:
            raise SsoNotConfigured("this tenant has no single sign-on configuration")
        tenant = await read_fresh(self._uow, tenant_id, lambda uow: uow.tenants.get(tenant_id))
        assert tenant is not None  # the caller's own tenant
        return SsoConfigInfo(record, self._settings.redirect_uri, tenant.slug)


@dataclass(frozen=True, slots=True)
class SsoStart:
    """Where to send the browser, and the binding cookie value it must keep."""

    url: str
    binding: str


@dataclass(frozen=True, slots=True)
class SsoCallback:
    """The authorization response's parameters, as the browser brought them."""

    state: str | None
    code: str | None
    iss: str | None = None
    error: str | None = None
    error_description: str | None = None


class SsoService:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        clock: Clock,
        oidc: OidcClient,
        box: SecretBox,
        auth: AuthService,
        hasher: PasswordHasher,
        settings: SsoSettings,
    ) -> None:
        self._uow = uow_factory
        self._clock = clock
        self._oidc = oidc
        self._box = box
        self._auth = auth
        self._hasher = hasher
        self._settings = settings

    def _redirect_uri(self) -> str:
        if not self._settings.redirect_uri:
            raise SsoServerNotConfigured("sso.redirect_uri is not set on this server")
        return self._settings.redirect_uri

    async def start(self, tenant_slug: str, binding: str | None) -> SsoStart:
        """A new login for the tenant: recorded, then the provider's authorization URL. The
        browser's binding value is kept when it has a well-formed one (several logins may be
        in flight in one browser), else a new one is made."""
        redirect_uri = self._redirect_uri()
        async with self._uow(read_only=True, strong=True) as uow:
            tenant = await uow.tenants.by_slug(tenant_slug)
        if tenant is None:
            raise SsoNotConfigured("no single sign-on for this tenant")
        config = await read_fresh(self._uow, tenant.id, lambda uow: uow.sso.config())
        if config is None:
            raise SsoNotConfigured("no single sign-on for this tenant")
        metadata = await self._oidc.metadata(tenant.id, config.issuer)
        if binding is None or len(binding) != 43:  # token_urlsafe(32)
            binding = secrets.token_urlsafe(32)
        state = tenant.id.hex + secrets.token_urlsafe(32)
        nonce = secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        now = self._clock.now()
        async with self._uow(tenant.id) as uow:
            await uow.sso.add_login(
                _digest(state),
                _digest(binding),
                nonce,
                verifier,
                config.issuer,
                now,
                now + timedelta(seconds=self._settings.login_ttl_seconds),
            )
            await uow.commit(token=False)
        url = authorization_url(metadata, config.client_id, redirect_uri, state, nonce, verifier)
        return SsoStart(url, binding)

    async def callback(self, response: SsoCallback, binding: str | None) -> TokenPair:
        """Finish a login: the one-use record of its state (this browser's), the provider's
        answer (RFC 9207 `iss`), the code exchange, the ID token's checks, then the account:
        linked by (issuer, sub), else the tenant's user with the verified email when it is
        linked to nobody, else a new user when just-in-time provisioning is on."""
        redirect_uri = self._redirect_uri()
        login = await self._take_login(response.state, binding)
        config = await read_fresh(self._uow, login.tenant_id, lambda uow: uow.sso.config())
        if config is None or config.issuer != login.issuer:
            raise SsoStateInvalid("the tenant's identity provider changed during this login")
        metadata = await self._oidc.metadata(login.tenant_id, config.issuer)
        # RFC 9207 before anything else of the response is believed, its error included.
        if response.iss is not None and response.iss != metadata.issuer:
            raise SsoResponseIssuerMismatch("the authorization response names another issuer")
        if response.iss is None and metadata.iss_parameter_supported:
            raise SsoResponseIssuerMismatch("the authorization response lacks its issuer")
        if response.error is not None:
            # Only the OAuth error code is repeated: the description is the provider's text.
            raise SsoProviderRefused(
                f"the identity provider refused ({error_code(response.error)})"
            )
        if not response.code:
            raise SsoStateInvalid("the authorization response has no code")
        secret = await self._client_secret(login.tenant_id)
        id_token = await self._oidc.exchange(
            login.tenant_id,
            metadata,
            config.client_id,
            secret,
            response.code,
            login.code_verifier,
            redirect_uri,
        )
        claims = await self._oidc.verify(
            login.tenant_id,
            metadata,
            id_token,
            config.client_id,
            login.nonce,
            login.created_at.timestamp(),
        )
        email = _allowed_email(claims, config)
        async with self._uow(login.tenant_id) as uow:
            user_id, role = await self._account(uow, config, _subject(claims), email)
            pair = await self._auth.issue_session(uow, user_id, login.tenant_id, role)
            await uow.commit()
        log.info("sso.login", tenant=str(login.tenant_id), user=str(user_id))
        return pair

    async def _take_login(self, state: str | None, binding: str | None) -> SsoLoginRecord:
        if not state or not binding or len(state) < 33:
            raise SsoStateInvalid("no login in flight for this state in this browser")
        try:
            tenant_id = uuid.UUID(hex=state[:32])
        except ValueError:
            raise SsoStateInvalid("no login in flight for this state in this browser") from None
        async with self._uow(tenant_id) as uow:
            login = await uow.sso.take_login(_digest(state), _digest(binding), self._clock.now())
            await uow.commit(token=False)
        if login is None:
            raise SsoStateInvalid("no login in flight for this state in this browser")
        return login

    async def _client_secret(self, tenant_id: uuid.UUID) -> SecretStr:
        record = await read_fresh(
            self._uow, tenant_id, lambda uow: uow.tenant_secrets.get(CLIENT_SECRET)
        )
        if record is None:
            raise SsoNotConfigured("the tenant's client secret is missing")
        return self._box.decrypt(record.ciphertext)

    async def _account(
        self, uow: UnitOfWork, config: SsoConfigRecord, subject: str, email: str
    ) -> tuple[uuid.UUID, Role]:
        """The user this (issuer, subject) signs in as, linked or provisioned on the way; the
        user row stays locked until the session is issued (as password login does)."""
        linked = await uow.sso.linked_user(config.issuer, subject)
        if linked is not None:
            user = await uow.users.get(linked, lock=True)
            if user is None:  # deleted meanwhile (the link goes with it)
                raise SsoNoAccount("the linked account no longer exists")
            return user.id, Role[user.role]
        user = await uow.users.by_email(email, lock=True)
        if user is not None:
            if await uow.sso.is_linked(user.id) or not await uow.sso.link(
                config.issuer, subject, user.id
            ):
                raise SsoAccountLinked("this account is linked to another identity")
            log.info("sso.linked", tenant=str(config.tenant_id), user=str(user.id))
            return user.id, Role[user.role]
        if not config.jit_provisioning:
            raise SsoNoAccount("no account for this identity; ask an administrator for one")
        # No password: a random one nobody knows (hashed, so a password attempt costs the
        # same as for any account and never matches).
        unusable = await self._hasher.hash(secrets.token_urlsafe(32))
        created = await uow.users.add(uuid.uuid4(), email, unusable, config.default_role)
        if created is None or not await uow.sso.link(config.issuer, subject, created.id):
            raise SsoAccountLinked("this account was created by a concurrent login; retry")
        log.info("sso.provisioned", tenant=str(config.tenant_id), user=str(created.id))
        return created.id, Role[created.role]


def _subject(claims: dict[str, Any]) -> str:
    """`sub`: at most 255 printable ASCII characters (OIDC Core 2), kept exactly."""
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 255:
        raise IdTokenInvalid("the ID token's sub is not usable")
    if not (subject.isascii() and subject.isprintable()):
        raise IdTokenInvalid("the ID token's sub is not usable")
    return subject


def _allowed_email(claims: dict[str, Any], config: SsoConfigRecord) -> str:
    """The ID token's email, when the provider verified it, it is a plain ASCII address and
    its domain is allowed. ASCII only: lower-casing it is then exact (no Unicode case folding,
    where the Kelvin sign becomes `k`), so it can only match the account with that address."""
    email = claims.get("email")
    if not isinstance(email, str) or not email:
        raise SsoEmailUnverified("the identity provider sent no email")
    if claims.get("email_verified") is not True:
        raise SsoEmailUnverified("the identity provider has not verified this email")
    if len(email) > 254 or _EMAIL.fullmatch(email) is None:
        raise SsoEmailInvalid("the identity provider's email is not a plain ASCII address")
    email = email.lower()
    if email.rsplit("@", 1)[1] not in config.allowed_domains:
        raise SsoEmailDomain("this email's domain may not sign in to this tenant")
    return email
