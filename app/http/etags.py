"""Entity tags for versioned resources (RFC 9110): strong `"v<version>"`."""

from __future__ import annotations

import re

from app.core.errors import PreconditionFailed, PreconditionRequired

_TAG = re.compile(r'\s*(W/)?"([^"]*)"\s*(?:,|$)')
_VERSION = re.compile(r"v([0-9]{1,9})")  # ASCII digits only, and no giant integers


def etag(version: int) -> str:
    return f'"v{version}"'


def _tags(header: str) -> list[tuple[bool, str]]:
    return [(bool(weak), value) for weak, value in _TAG.findall(header)]


def not_modified(if_none_match: str | None, version: int) -> bool:
    """If-None-Match uses weak comparison; `*` matches any current representation."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(value == f"v{version}" for _, value in _tags(if_none_match))


def required_versions(if_match: str | None) -> frozenset[int] | None:
    """Versions a conditional write accepts; None for `If-Match: *` (any existing version).

    Missing -> 428; a header naming no usable strong tag -> 412 (it cannot match).
    """
    if if_match is None or not if_match.strip():
        raise PreconditionRequired("this update needs an If-Match header with the product's ETag")
    if if_match.strip() == "*":
        return None
    versions = frozenset(
        int(match.group(1))
        for weak, value in _tags(if_match)
        if not weak and (match := _VERSION.fullmatch(value))
    )
    if not versions:
        raise PreconditionFailed("If-Match does not match the current ETag")
    return versions
