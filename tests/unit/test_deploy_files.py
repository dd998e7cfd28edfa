"""docker-compose.yml and the README configuration table stay true to the settings model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from app.core.clock import SystemClock
from app.identity.tokens import TokenService
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_compose_environment_is_valid_storefront_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"primary", "replica", "redis", "rabbitmq", "migrate", "api", "worker"} <= set(services)
    environment = services["api"]["environment"]
    assert environment == services["migrate"]["environment"] == services["worker"]["environment"]
    for name, value in environment.items():
        monkeypatch.setenv(name, str(value))
    settings = Settings()  # every variable is a real, valid setting (extra="forbid")
    assert settings.database.replicas[0].url.endswith("@replica:5432/storefront")
    assert settings.database.owner_url.startswith("postgresql+asyncpg://storefront@primary")
    assert settings.redis.url == "redis://redis:6379/0"
    assert settings.broker.url == "amqp://guest:guest@rabbitmq:5672/"
    assert settings.auth.tokens.keys[0].algorithm == "HS256"
    TokenService(settings.auth.tokens, SystemClock())  # a usable key (HS256 needs >= 32 bytes)


def leaf_settings(model: type, prefix: str = "") -> set[str]:
    names = set()
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        default = field.default
        if hasattr(type(default), "model_fields"):
            names |= leaf_settings(type(default), f"{prefix}{name}.")
        else:
            names.add(prefix + name)
    return names


def test_readme_documents_every_setting() -> None:
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([a-z0-9_.*]+)` \|", readme, flags=re.MULTILINE))
    for setting in leaf_settings(Settings):
        wildcard = re.sub(r"^database\.replica_pool\..*", "database.replica_pool.*", setting)
        assert setting in documented or wildcard in documented, f"{setting} missing in README"
    base = (ROOT / "config" / "base.yaml").read_text()
    for setting in leaf_settings(Settings) - {"env"}:  # env picks the YAML file itself
        leaf = setting.rsplit(".", 1)[-1]
        assert re.search(rf"^\s*{leaf}:", base, flags=re.MULTILINE), f"{setting} not in base.yaml"
