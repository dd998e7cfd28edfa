"""The one permission model: which user roles and which API-key scopes allow each operation.

Routes declare the `Permission` they need; a user's role and an API key's scopes are both turned
into a set of permissions through `TABLE`, the only place access rules live (printed in
docs/permissions.md by `storefront auth permissions`).
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from functools import cache


class Role(IntEnum):
    """Ordered: each role can do everything the roles below it can."""

    viewer = 1
    member = 2
    admin = 3
    owner = 4


class Permission(StrEnum):
    CATALOG_READ = "catalog.read"
    CATALOG_WRITE = "catalog.write"
    ORDERS_READ = "orders.read"
    ORDERS_WRITE = "orders.write"
    ORDERS_WATCH = "orders.watch"
    REPORTS_READ = "reports.read"
    USERS_READ = "users.read"
    USERS_MANAGE = "users.manage"
    OWNERSHIP_TRANSFER = "ownership.transfer"
    API_KEYS_READ = "api_keys.read"
    API_KEYS_MANAGE = "api_keys.manage"
    API_KEYS_DELETE = "api_keys.delete"
    API_VERSION_PIN = "api_version.pin"
    SSO_MANAGE = "sso.manage"


# permission: (least role that has it, API-key scope that grants it or None for users only)
TABLE: dict[Permission, tuple[Role, str | None]] = {
    Permission.CATALOG_READ: (Role.viewer, "catalog:read"),
    Permission.CATALOG_WRITE: (Role.member, "catalog:write"),
    Permission.ORDERS_READ: (Role.viewer, "orders:read"),
    Permission.ORDERS_WRITE: (Role.member, "orders:write"),
    # A WebSocket ticket and the live status sockets (the same order data as orders.read).
    Permission.ORDERS_WATCH: (Role.viewer, "orders:read"),
    Permission.REPORTS_READ: (Role.viewer, "reports:read"),
    Permission.USERS_READ: (Role.admin, "users:manage"),
    Permission.USERS_MANAGE: (Role.admin, "users:manage"),
    Permission.OWNERSHIP_TRANSFER: (Role.owner, None),
    Permission.API_KEYS_READ: (Role.admin, "api_keys:manage"),
    Permission.API_KEYS_MANAGE: (Role.admin, "api_keys:manage"),
    Permission.API_KEYS_DELETE: (Role.owner, "api_keys:manage"),
    Permission.API_VERSION_PIN: (Role.owner, None),
    Permission.SSO_MANAGE: (Role.owner, None),
}

SCOPES = frozenset(scope for _, scope in TABLE.values() if scope is not None)


@cache
def role_permissions(role: Role) -> frozenset[Permission]:
    return frozenset(p for p, (least, _) in TABLE.items() if role >= least)


@cache
def scope_permissions(scopes: frozenset[str]) -> frozenset[Permission]:
    return frozenset(p for p, (_, scope) in TABLE.items() if scope in scopes)


def grantable_scopes(permissions: frozenset[Permission]) -> frozenset[str]:
    """Scopes a principal may put on a new key: only those whose every permission it holds
    itself, so no one mints a key stronger than they are (an admin cannot mint a key that
    deletes keys)."""
    return frozenset(s for s in SCOPES if scope_permissions(frozenset({s})) <= permissions)


def render_markdown() -> str:
    """The table as docs/permissions.md shows it."""
    roles = sorted(Role)
    head = "| permission | " + " | ".join(r.name for r in roles) + " | API-key scope |"
    lines = [head, "|" + "---|" * (len(roles) + 2)]
    for permission, (least, scope) in TABLE.items():
        marks = " | ".join("yes" if role >= least else "-" for role in roles)
        lines.append(f"| `{permission}` | {marks} | {f'`{scope}`' if scope else '-'} |")
    return "\n".join(lines) + "\n"
