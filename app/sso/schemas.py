"""SSO DTOs at the HTTP edge: the tenant's provider configuration (the secret is write-only)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import Field, SecretStr

from app.http.schemas import Strict, Text
from app.identity.permissions import Role
from app.sso.service import SsoConfigInfo, SsoConfigInput

Domain = Annotated[
    str,
    Field(
        pattern=r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
        max_length=253,
        examples=["acme.example"],
    ),
]
# Kept exactly as sent: the issuer is compared byte for byte with the provider's.
IssuerUrl = Annotated[Text, Field(min_length=8, max_length=500, pattern=r"^https?://[^\s?#]+$")]
SsoRole = Literal["admin", "member", "viewer"]


class SsoConfigWrite(Strict):
    issuer: IssuerUrl = Field(
        description="The provider's issuer identifier, exactly as its discovery document and"
        " ID tokens name it (https; its /.well-known/openid-configuration is read).",
        examples=["https://login.acme.example"],
    )
    client_id: Annotated[Text, Field(min_length=1, max_length=255)]
    client_secret: Annotated[SecretStr | None, Field(min_length=1, max_length=500)] = Field(
        None,
        description="Stored encrypted, never shown again. Omit to keep the stored one"
        " (required the first time).",
    )
    allowed_domains: list[Domain] = Field(
        min_length=1,
        max_length=50,
        description="Email domains that may sign in (exact, lower case; no subdomains implied).",
    )
    default_role: SsoRole = Field("member", description="Role of users created at first login.")
    jit_provisioning: bool = Field(
        False, description="Create a user at the first SSO login of an unknown email."
    )
    password_login_disabled: bool = Field(
        False,
        description="Refuse password logins of this tenant's users (403"
        " auth.password_login_disabled); they sign in through the provider only.",
    )

    def to_input(self) -> SsoConfigInput:
        return SsoConfigInput(
            issuer=self.issuer,
            client_id=self.client_id,
            allowed_domains=list(self.allowed_domains),
            default_role=Role[self.default_role],
            jit_provisioning=self.jit_provisioning,
            password_login_disabled=self.password_login_disabled,
        )


class SsoConfigRead(Strict):
    issuer: str
    client_id: str
    client_secret_set: Literal[True] = True
    allowed_domains: list[str]
    default_role: SsoRole
    jit_provisioning: bool
    password_login_disabled: bool
    redirect_uri: str | None = Field(
        description="Register exactly this redirect URI at the provider (sso.redirect_uri)."
    )
    login_url: str = Field(description="Where staff start signing in (relative to this API).")
    updated_at: datetime

    @classmethod
    def of(cls, info: SsoConfigInfo) -> SsoConfigRead:
        config = info.config
        return cls(
            issuer=config.issuer,
            client_id=config.client_id,
            allowed_domains=config.allowed_domains,
            default_role=config.default_role,
            jit_provisioning=config.jit_provisioning,
            password_login_disabled=config.password_login_disabled,
            redirect_uri=info.redirect_uri,
            login_url=info.login_url,
            updated_at=config.updated_at,
        )
