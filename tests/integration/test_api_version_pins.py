"""An operator's pin reaches every API process, and bad input to the CLI is a clear refusal."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

import httpx

from app.versions import FIRST, NEWEST
from tests.conftest import Harness
from tests.integration.test_cli import storefront
from tests.served_app import ServedApp


async def test_a_pin_from_the_cli_reaches_a_running_process_within_2_s(
    harness: Harness, served_apps: Callable[..., ServedApp]
) -> None:
    _, secret = await harness.tenant_with_key("pinned", scopes=("catalog:read",))
    app = served_apps(env={"STOREFRONT_INVALIDATION__RESYNC_INTERVAL_SECONDS": "60"})
    client = httpx.AsyncClient(base_url=app.url, headers={"X-API-Key": secret})

    async def served() -> str:
        return (await client.get("/v1/products")).headers["storefront-version"]

    assert await served() == NEWEST.name

    pinned = storefront(harness, "tenants", "api-version", "pinned", FIRST.name)
    assert pinned.returncode == 0, pinned.stderr
    assert f"pinned to API version {FIRST.name}" in pinned.stdout
    committed = time.monotonic()
    while await served() != FIRST.name:
        assert time.monotonic() - committed < 2.0
        await asyncio.sleep(0.05)

    unknown = storefront(harness, "tenants", "api-version", "pinned", "2020-01-01")
    assert unknown.returncode != 0
    assert "no API version '2020-01-01'" in unknown.stderr
    assert "Traceback" not in unknown.stderr
    missing = storefront(harness, "tenants", "api-version", "nobody", FIRST.name)
    assert missing.returncode != 0
    assert "Traceback" not in missing.stderr
    await client.aclose()


DEPRECATED = json.dumps(
    [
        {
            "version": FIRST.name,
            "deprecated_at": "2026-11-30T00:00:00Z",
            "sunset_at": "2027-06-01T00:00:00Z",
        }
    ]
)


async def test_the_usage_report_names_the_tenants_on_a_deprecated_version(
    harness: Harness, served_apps: Callable[..., ServedApp]
) -> None:
    """Two API processes serve a tenant on the deprecated version and one on the newest; the
    operator's report sums both processes and names only the first tenant."""
    old, old_secret = await harness.tenant_with_key("still-old", scopes=("catalog:read",))
    _, new_secret = await harness.tenant_with_key("moved-on", scopes=("catalog:read",))
    await harness.container.tenancy_service().pin_api_version(old.id, FIRST.name)
    env = {"STOREFRONT_API__DEPRECATIONS": DEPRECATED, "STOREFRONT_API__USAGE_FLUSH_SECONDS": "0.2"}
    apps = [served_apps(env=env), served_apps(env=env)]
    async with httpx.AsyncClient() as client:
        for app in apps:
            for _ in range(3):
                seen = await client.get(f"{app.url}/v1/products", headers={"X-API-Key": old_secret})
                assert seen.headers["deprecation"] == "@1795996800"
                await client.get(f"{app.url}/v1/products", headers={"X-API-Key": new_secret})
    deadline = time.monotonic() + 5
    while True:
        report = storefront(harness, "api", "usage", "--deprecated", "--json", **env)
        assert report.returncode == 0, report.stderr
        lines = [json.loads(line) for line in report.stdout.splitlines() if line.startswith("{")]
        if lines and lines[0]["requests"] == 6:
            break
        assert time.monotonic() < deadline, report.stdout
        await asyncio.sleep(0.2)
    assert [(line["tenant"], line["version"], line["deprecated"]) for line in lines] == [
        ("still-old", FIRST.name, True)
    ]
    assert lines[0]["sunset_at"] == "2027-06-01T00:00:00+00:00"
    everyone = storefront(harness, "api", "usage", **env)
    assert everyone.returncode == 0, everyone.stderr
    assert "moved-on" in everyone.stdout
    assert "still-old" in everyone.stdout
