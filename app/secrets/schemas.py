"""Secrets DTOs at the HTTP edge: metadata always, the value only in the creation response."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from app.secrets.service import SecretInfo


class WebhookSecretRead(BaseModel):
    fingerprint: str = Field(description="First 16 hex digits of SHA-256 of the secret.")
    created_at: datetime
    updated_at: datetime = Field(description="When the current value was generated.")

    @classmethod
    def of(cls, info: SecretInfo) -> WebhookSecretRead:
        return cls(
            fingerprint=info.fingerprint, created_at=info.created_at, updated_at=info.updated_at
        )


class WebhookSecretCreated(WebhookSecretRead):
    secret: str = Field(
        description="Shown once: store it now. Webhooks are signed with it (HMAC-SHA256)."
    )
