"""Who is calling: the tenant and what they may do. Built at the edge, passed to use cases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from app.core.errors import Forbidden

SCOPES = frozenset(
    {
        "catalog:read",
        "catalog:write",
        "orders:read",
        "orders:write",
        "reports:read",
        "users:manage",
        "api_keys:manage",
    }
)


class InsufficientScope(Forbidden):
    code = "auth.insufficient_scope"
    title = "Insufficient scope"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: str  # "api_key" (users arrive with the identity issue)
    id: uuid.UUID
    tenant_id: uuid.UUID
    scopes: frozenset[str]
    expires_at: datetime | None = None

    def require(self, scope: str) -> None:
        if scope not in self.scopes:
            raise InsufficientScope(f"this credential lacks the '{scope}' scope")
