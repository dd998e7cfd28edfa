"""Tenant sign-up DTOs."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from app.http.schemas import Strict, Text
from app.identity.schemas import Email, Password, TenantRef, UserRead


class OwnerCreate(Strict):
    email: Email
    password: Password


class TenantSignup(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "Acme Ltd",
                    "slug": "acme",
                    "owner": {"email": "owner@acme.example", "password": "correct horse 42"},
                }
            ]
        },
    )
    name: Annotated[Text, Field(min_length=1, max_length=200)]
    slug: Annotated[str, Field(pattern=r"^[a-z0-9-]{3,40}$", max_length=40, examples=["acme"])]
    owner: OwnerCreate


class SignupRead(BaseModel):
    tenant: TenantRef
    owner: UserRead
