"""2026-12-04: `GET /v1/me` lists the `sso.manage` (owners) and `orders.watch` permissions."""

from __future__ import annotations

from typing import Any

from app.versions import VersionChange


def _me(body: dict[str, Any]) -> dict[str, Any]:
    new = ("sso.manage", "orders.watch")
    return {**body, "permissions": [p for p in body["permissions"] if p not in new]}


class MeListsTheSsoPermission(VersionChange):
    """Identity: `GET /v1/me` lists the owner's new `sso.manage` permission (configuring the
    tenant's single sign-on with `PUT /v1/sso-config`) and the new `orders.watch` (live order
    status over WebSocket, viewers and up); every version can call both."""

    responses = {("GET", "/v1/me"): _me}
