"""Feature-flag domain errors (stable codes)."""

from __future__ import annotations

from app.core.errors import NotFound, Unprocessable


class FlagNotFound(NotFound):
    code = "flags.not_found"
    title = "Feature flag not found"


class InvalidFlag(Unprocessable):
    code = "flags.invalid"
    title = "Invalid feature flag setting"
