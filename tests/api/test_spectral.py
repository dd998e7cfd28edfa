"""Spectral with its OpenAPI ruleset and the OWASP API Security ruleset on the served document.
Every finding must be one the table below accepts, with its reason (docs/decisions.md has the
counts); anything else fails the test, so a new real finding cannot slip in."""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.tooling import NPM_PREFIX, npm_tool

PACKAGES = ("@stoplight/spectral-cli@6", "@stoplight/spectral-owasp-ruleset@2")
RULESET = "extends:\n  - spectral:oas\n  - {owasp}\n"

Finding = dict[str, Any]


def _response_side(finding: Finding) -> bool:
    """In a response (or a schema only responses use): limits there bind the server, which
    builds those values, not a caller; every input schema is bounded (checked below)."""
    path = finding["path"]
    return "responses" in path or (path[0] == "components" and path[2] in _RESPONSE_SCHEMAS)


_RESPONSE_SCHEMAS: set[str] = set()  # filled from the document: schemas no request uses

# rule -> (why it is accepted, which findings of it are)
ACCEPTED: dict[str, tuple[str, Callable[[Finding], bool]]] = {
    "owasp:api8:2023-define-cors-origin": (
        "No CORS: the API is for servers and the same-origin docs page; no origin is allowed.",
        lambda f: True,
    ),
    "owasp:api4:2023-string-limit": (
        "Response fields; If-Match / If-None-Match compare as text, any length (412 / 200).",
        lambda f: _response_side(f) or _header_named(f, {"If-Match", "If-None-Match"}),
    ),
    "owasp:api4:2023-string-restricted": (
        "Response fields; If-Match / If-None-Match take entity-tag lists (any string compares);"
        " the sf_sso binding cookie takes any value (a malformed one is replaced at start and"
        " fails the binding at the callback, so a stale cookie never blocks a login).",
        lambda f: _response_side(f) or _header_named(f, {"If-Match", "If-None-Match", "sf_sso"}),
    ),
    "owasp:api4:2023-integer-limit": ("Response fields.", _response_side),
    "owasp:api4:2023-array-limit": ("Response fields.", _response_side),
    "owasp:api4:2023-rate-limit": (
        "No RateLimit headers where nothing is counted: probes and operator endpoints.",
        lambda f: _operation(f) in _UNCOUNTED,
    ),
    "owasp:api4:2023-rate-limit-responses-429": (
        "Probes and operator endpoints are never limited: operators must see a saturated process.",
        lambda f: _operation(f) in _PROBES_AND_OPS,
    ),
    "owasp:api8:2023-define-error-responses-401": (
        "Public operations (no credential, so no 401): logout, sign-up, SSO start, probes.",
        lambda f: _operation(f) in _PUBLIC_NO_401,
    ),
    "owasp:api2:2023-write-restricted": (
        "Public by design: log-in, refresh, logout, sign-up.",
        lambda f: (
            _operation(f)
            in {"/v1/auth/token", "/v1/auth/refresh", "/v1/auth/logout"} | {"/v1/tenants"}
        ),
    ),
    "owasp:api2:2023-read-restricted": (
        "Public by design: liveness and readiness probes; the SSO start and callback (the"
        " browser has no credential yet: the provider's login is it).",
        lambda f: _operation(f) in _PROBES | _SSO_LOGIN,
    ),
}
_PROBES = {"/health/live", "/health/ready"}
_SSO_START = "/v1/auth/sso/{tenant_slug}/start"
_SSO_LOGIN = {_SSO_START, "/v1/auth/sso/callback"}
_PUBLIC_NO_401 = _PROBES | {"/v1/auth/logout", "/v1/tenants", _SSO_START}
_PROBES_AND_OPS = _PROBES | {"/ops/db", "/ops/tenants/{tenant_id}", "/metrics"}
_UNCOUNTED = _PROBES_AND_OPS


def _operation(finding: Finding) -> str | None:
    path = finding["path"]
    return str(path[1]) if path[0] == "paths" and len(path) > 1 else None


def _header_named(finding: Finding, names: set[str]) -> bool:
    path = finding["path"]
    if "parameters" not in path:
        return False
    return finding.get("_parameter") in names


def _schemas_used_by_requests(spec: dict[str, Any]) -> set[str]:
    used: set[str] = set()
    todo = [
        json.dumps(operation.get("requestBody", {})) + json.dumps(operation.get("parameters", []))
        for methods in spec["paths"].values()
        for operation in methods.values()
    ]
    while todo:
        text = todo.pop()
        for name, schema in spec["components"]["schemas"].items():
            if f'"#/components/schemas/{name}"' in text and name not in used:
                used.add(name)
                todo.append(json.dumps(schema))
    return used


def lint(document: Path, cwd: Path) -> list[Finding]:
    spectral = npm_tool("spectral", *PACKAGES)
    owasp = NPM_PREFIX / "node_modules/@stoplight/spectral-owasp-ruleset/dist/ruleset.mjs"
    ruleset = cwd / "ruleset.yaml"
    ruleset.write_text(RULESET.format(owasp=owasp))
    run = subprocess.run(
        [spectral, "lint", str(document), f"--ruleset={ruleset}", "--format=json", "--quiet"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )
    assert run.returncode in (0, 1), run.stderr  # 1: findings at error severity
    findings: list[Finding] = json.loads(run.stdout or "[]")
    return findings


def test_every_spectral_owasp_finding_is_an_accepted_one(served: str, tmp_path: Path) -> None:
    spec = httpx.get(f"{served}/openapi.json").json()
    document = tmp_path / "openapi.json"
    document.write_text(json.dumps(spec))
    _RESPONSE_SCHEMAS.clear()
    _RESPONSE_SCHEMAS.update(set(spec["components"]["schemas"]) - _schemas_used_by_requests(spec))
    findings = lint(document, tmp_path)
    assert findings, "spectral ran no rule at all"
    unexpected = []
    for finding in findings:
        path = finding["path"]
        if "parameters" in path:
            index = path.index("parameters")
            operation = spec
            for step in path[: index + 2]:
                operation = operation[int(step) if isinstance(operation, list) else step]
            finding["_parameter"] = operation["name"]
        accepted = ACCEPTED.get(finding["code"])
        if accepted is None or not accepted[1](finding):
            unexpected.append((finding["code"], "/".join(map(str, path)), finding["message"]))
    counts = Counter(finding["code"] for finding in findings)
    print("spectral findings accepted:", dict(sorted(counts.items())))
    assert not unexpected, "\n".join(map(str, unexpected))
