"""Who is calling: the tenant and what they may do. Built at the edge, passed to use cases."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from app.core.errors import Forbidden
from app.identity.permissions import Permission, Role, role_permissions, scope_permissions


class InsufficientPermission(Forbidden):
    code = "auth.insufficient_scope"
    title = "Insufficient permission"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: Literal["user", "api_key"]
    id: uuid.UUID
    tenant_id: uuid.UUID
    role: Role | None = None  # users
    scopes: frozenset[str] = frozenset()  # API keys
    expires_at: datetime | None = None
    rotated: bool = False  # API keys: replaced by a rotation, valid for its grace period only
    permissions: frozenset[Permission] = field(init=False)

    def __post_init__(self) -> None:
        granted = role_permissions(self.role) if self.role else scope_permissions(self.scopes)
        object.__setattr__(self, "permissions", granted)

    def require(self, permission: Permission) -> None:
        if permission not in self.permissions:
            raise InsufficientPermission(f"this credential may not {permission.value}")
