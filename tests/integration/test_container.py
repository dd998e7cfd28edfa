"""The container: providers can be overridden per test, and the original comes back."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from dependency_injector import providers

from app.core.clock import FixedClock
from tests.conftest import Harness, MovableClock

SHIRT = {"sku": "S-1", "name": "Shirt", "price": {"amount": 100, "currency": "EUR"}, "stock": 1}


async def test_overriding_the_clock_changes_what_routes_use(
    harness: Harness, acme: dict[str, Any]
) -> None:
    frozen = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with harness.container.clock.override(providers.Object(FixedClock(frozen))):
        harness.container.catalog_service.reset()  # built before the override: holds the old
        response = await harness.client.post("/v1/products", json=SHIRT)
    assert response.status_code == 201
    assert response.json()["created_at"] == "2030-01-02T03:04:05Z"

    harness.container.catalog_service.reset()
    assert isinstance(harness.container.clock(), MovableClock)  # the harness's own override
    later = await harness.client.post("/v1/products", json={**SHIRT, "sku": "S-2"})
    assert later.json()["created_at"].startswith(str(datetime.now(UTC).year))


async def test_override_is_scoped_to_the_with_block(harness: Harness, acme: dict[str, Any]) -> None:
    class Broken:
        async def list(self, *args: Any) -> Any:
            raise LookupError("not the real service")

    with harness.container.catalog_service.override(providers.Object(Broken())):
        assert (await harness.client.get("/v1/products")).status_code == 500
    assert (await harness.client.get("/v1/products")).status_code == 200


def test_every_module_with_injections_is_wired() -> None:
    """Wiring lists modules, not packages (it is faster): a new route module must be added."""
    from pathlib import Path

    from containers import Container

    root = Path(__file__).resolve().parents[2]
    injecting = {
        ".".join(path.relative_to(root).with_suffix("").parts)
        for path in (root / "app").rglob("*.py")
        if '= Provide["' in path.read_text() and path.name != "di.py"  # di.py: the tool itself
    }
    assert injecting == set(Container.wiring_config.modules)


async def test_identity_providers_are_overridable(harness: Harness) -> None:
    """Override before first use: the services built afterwards take the replacement."""
    from app.identity.passwords import PasswordHasher
    from app.settings import PasswordSettings

    stronger = PasswordHasher(PasswordSettings(argon2_memory_kib=2048, argon2_time_cost=3))
    with harness.container.password_hasher.override(providers.Object(stronger)):
        body = {
            "name": "Acme",
            "slug": "acme",
            "owner": {"email": "o@acme.example", "password": "a-long-password-1"},
        }
        assert (await harness.client.post("/v1/tenants", json=body)).status_code == 201
    stored = harness.cluster.psql("primary", "SELECT password_hash FROM users")
    assert "$argon2id$v=19$m=2048,t=3,p=1$" in stored
