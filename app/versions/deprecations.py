"""`api.deprecations`: which versions and routes are deprecated, and refusing them after their
sunset (app/http/versioning.py announces them; pinning refuses a withdrawn version)."""

from __future__ import annotations

import re

from app.core.clock import Clock
from app.settings import DeprecationSettings
from app.versions import ApiVersion, named

_PARAMETER = re.compile(r"\{[^}]+\}")


class Deprecations:
    """`api.deprecations`, looked up per request (a dict get and a few regexes)."""

    def __init__(self, entries: list[DeprecationSettings], clock: Clock) -> None:
        self._clock = clock
        self._versions = {e.version: e for e in entries if e.version is not None}
        self._routes: list[tuple[str, re.Pattern[str], DeprecationSettings]] = []
        for entry in entries:
            if entry.route is not None:
                method, template = entry.route.split(" ", 1)
                pieces = [re.escape(part) for part in _PARAMETER.split(template)]
                self._routes.append((method, re.compile("[^/]+".join(pieces)), entry))
        for name in self._versions:
            named(name)  # an unknown version in the settings fails at start-up

    def check_routes(self, known: set[tuple[str, str]]) -> None:
        """Start-up: every deprecated route is one the app serves (a typo would announce and
        sunset nothing)."""
        for _, _, entry in self._routes:
            method, template = (entry.route or "").split(" ", 1)
            if (method, template) not in known:
                raise ValueError(f"api.deprecations: no route {entry.route!r} in this app")

    def of_version(self, version: ApiVersion) -> DeprecationSettings | None:
        return self._versions.get(version.name)

    def of_route(self, method: str, path: str) -> DeprecationSettings | None:
        for wanted, pattern, entry in self._routes:
            if wanted == method and pattern.fullmatch(path):
                return entry
        return None

    def refuse_sunset(self, entry: DeprecationSettings | None, error: type[Exception]) -> None:
        if entry is None or entry.sunset_at is None or self._clock.now() < entry.sunset_at:
            return
        what = entry.version or entry.route
        raise error(f"{what} was withdrawn on {entry.sunset_at.isoformat()}; see {entry.link}")
