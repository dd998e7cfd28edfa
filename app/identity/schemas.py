"""Identity DTOs at the HTTP edge: users, API keys, tokens, the current principal."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from app.http.schemas import Strict, Text
from app.identity.passwords import MAX_LENGTH, MIN_LENGTH
from app.identity.permissions import SCOPES, Role
from app.identity.repository import ApiKeyRecord, UserRecord
from app.tenants.repository import TenantRecord

Email = Annotated[EmailStr, Field(max_length=254, examples=["ada@example.com"])]
Password = Annotated[
    Text,
    Field(
        min_length=MIN_LENGTH,
        max_length=MAX_LENGTH,
        description="12 to 128 characters; common passwords are refused.",
    ),
]
RoleName = Literal["owner", "admin", "member", "viewer"]
# The scopes of app/identity/permissions.py (a unit test keeps the two equal).
Scope = Literal[
    "api_keys:manage",
    "catalog:read",
    "catalog:write",
    "orders:read",
    "orders:write",
    "reports:read",
    "users:manage",
]


class UserCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "ada@acme.example",
                    "password": "analytical engine 1843",
                    "role": "member",
                }
            ]
        },
    )
    email: Email
    password: Password
    role: RoleName = "member"


class UserUpdate(Strict):
    role: RoleName | None = None
    password: Password | None = None

    def role_value(self) -> Role | None:
        return Role[self.role] if self.role else None


class UserRead(BaseModel):
    id: uuid.UUID
    email: str
    role: RoleName
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: UserRecord) -> UserRead:
        return cls.model_validate(user, from_attributes=True)


class ApiKeyCreate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "shop front", "scopes": ["catalog:read", "orders:write"]},
            ]
        },
    )
    name: Annotated[Text, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(SCOPES))]
    expires_in_days: Annotated[int | None, Field(ge=1, le=3650)] = None


class ApiKeyRotate(Strict):
    grace_period_seconds: Annotated[
        int | None,
        Field(ge=0, le=30 * 86400, description="Default: auth.api_key_rotation_grace_seconds."),
    ] = None


class ApiKeyRead(BaseModel):
    id: uuid.UUID
    name: str
    prefix: str = Field(description="The first characters of the secret, to recognise it.")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime | None
    last_used_at: datetime | None

    @classmethod
    def of(cls, key: ApiKeyRecord) -> ApiKeyRead:
        return cls.model_validate(key, from_attributes=True)


class ApiKeyCreated(ApiKeyRead):
    secret: str = Field(description="Shown once: store it now; only a hash is kept.")

    @classmethod
    def with_secret(cls, key: ApiKeyRecord, secret: str) -> ApiKeyCreated:
        return cls(**ApiKeyRead.of(key).model_dump(), secret=secret)


class TokenResponse(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds the access token is valid.")
    refresh_token: str


class RefreshRequest(Strict):
    refresh_token: Annotated[Text, Field(min_length=1, max_length=200)]


class TenantRef(BaseModel):
    id: uuid.UUID
    slug: str
    name: str

    @classmethod
    def of(cls, tenant: TenantRecord) -> TenantRef:
        return cls.model_validate(tenant, from_attributes=True)


class MeRead(BaseModel):
    kind: Literal["user", "api_key"]
    id: uuid.UUID
    tenant: TenantRef
    email: str | None = None
    role: RoleName | None = None
    scopes: list[str] = Field(description="API keys: their scopes; users: empty.")
    permissions: list[str] = Field(description="What this principal may do (docs/permissions.md).")


class WsTicketRead(BaseModel):
    ticket: str = Field(
        description="Open the WebSocket with `?ticket=<this>`; valid once, within `expires_in`."
    )
    expires_at: datetime
    expires_in: float = Field(description="Seconds the ticket stays valid.")
