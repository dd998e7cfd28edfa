"""2026-12-03: `GET /v1/me` lists the `api_version.pin` permission (owners)."""

from __future__ import annotations

from typing import Any

from app.versions import VersionChange


def _me(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "permissions": [p for p in body["permissions"] if p != "api_version.pin"]}


class MeListsTheVersionPin(VersionChange):
    """Identity: `GET /v1/me` lists the owner's new `api_version.pin` permission (pinning the
    tenant's API version with `PUT /v1/api-version`, which every version can call)."""

    responses = {("GET", "/v1/me"): _me}
