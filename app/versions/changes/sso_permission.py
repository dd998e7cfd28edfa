"""2026-12-04: `GET /v1/me` lists the `sso.manage` permission (owners)."""

from __future__ import annotations

from typing import Any

from app.versions import VersionChange


def _me(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "permissions": [p for p in body["permissions"] if p != "sso.manage"]}


class MeListsTheSsoPermission(VersionChange):
    """Identity: `GET /v1/me` lists the owner's new `sso.manage` permission (configuring the
    tenant's single sign-on with `PUT /v1/sso-config`, which every version can call)."""

    responses = {("GET", "/v1/me"): _me}
