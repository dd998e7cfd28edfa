"""API versions, date-named (Stripe style): the business logic and the schemas exist once, for
the newest version; each older version is the newer one minus the changes made since, and each
change is one module under `app/versions/changes/` that turns a newer response into the older
shape (and the OpenAPI document with it). Its docstring is its changelog entry
(`docs/changelog.md` is generated from this registry: `storefront api changelog`).

`VERSIONS` lists them oldest first; a version names the changes it introduced. The version of a
request: its `Storefront-Version` header, else its tenant's pin (set at sign-up to the newest,
changed by the owner or an operator), else the newest. Responses say which one served them
(app/http/versioning.py). Requests are the same in every version so far; a change that renames a
request field would add a request upgrade next to its response downgrade.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from app.core.errors import Gone, InvalidRequest

Downgrade = Callable[[Any], Any]


class UnknownVersion(InvalidRequest):
    code = "api.version_unknown"
    title = "Unknown API version"


class VersionSunset(Gone):
    code = "api.version_sunset"
    title = "API version withdrawn"


class RouteSunset(Gone):
    code = "api.route_sunset"
    title = "Route withdrawn"


class VersionChange:
    """One backwards-incompatible change. Subclasses set `responses`: for each (method, route
    template) whose response body changed, the function that turns the newer body into the
    older; and override `downgrade_openapi` to turn the newer document into the older."""

    responses: Mapping[tuple[str, str], Downgrade] = {}

    @property
    def description(self) -> str:
        return " ".join((type(self).__doc__ or "").split())

    def downgrade_openapi(self, document: dict[str, Any]) -> None:
        """Edit `document` (the newer version's) in place into the older version's."""


@dataclass(frozen=True)
class ApiVersion:
    name: str
    changes: tuple[VersionChange, ...] = ()


def _versions() -> tuple[ApiVersion, ...]:
    from app.versions.changes.order_lines import OrderItemsBecomeLines
    from app.versions.changes.pin_permission import MeListsTheVersionPin
    from app.versions.changes.sso_permission import MeListsTheSsoPermission

    return (
        ApiVersion("2026-11-23"),
        ApiVersion("2026-12-03", (OrderItemsBecomeLines(), MeListsTheVersionPin())),
        ApiVersion("2026-12-04", (MeListsTheSsoPermission(),)),
    )


VERSIONS: tuple[ApiVersion, ...] = _versions()
NEWEST = VERSIONS[-1]
FIRST = VERSIONS[0]
_BY_NAME = {version.name: version for version in VERSIONS}


def named(name: str) -> ApiVersion:
    version = _BY_NAME.get(name)
    if version is None:
        known = ", ".join(v.name for v in VERSIONS)
        raise UnknownVersion(f"no API version {name[:40]!r}; the versions are {known}")
    return version


def changes_since(version: ApiVersion) -> list[VersionChange]:
    """The changes made after `version`, newest first (the order to undo them in)."""
    index = VERSIONS.index(version)
    return [change for later in reversed(VERSIONS[index + 1 :]) for change in later.changes]


def downgrades(version: ApiVersion, method: str, template: str) -> list[Downgrade]:
    """What turns the newest body of this route into `version`'s (empty: the same)."""
    return [
        change.responses[(method, template)]
        for change in changes_since(version)
        if (method, template) in change.responses
    ]


def changelog() -> str:
    """docs/changelog.md: every version and what it changed, newest first."""
    lines = [
        "# API changelog",
        "",
        "Generated from `app/versions` (tests/api/test_api_versions.py keeps it current). Send",
        "`Storefront-Version: <date>` to choose a version per request; without it a request is",
        "served the version its tenant is pinned to (`PUT /v1/api-version`).",
        "",
    ]
    for version in reversed(VERSIONS):
        lines.append(f"## {version.name}")
        lines.append("")
        if not version.changes:
            lines.append("The first version.")
        for change in version.changes:
            lines.append(f"- {change.description}")
        lines.append("")
    return "\n".join(lines)
