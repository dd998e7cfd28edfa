"""Settings: validated at start-up, with messages that name the setting."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from app.settings import Settings, describe_error


@pytest.mark.parametrize(
    ("section", "setting"),
    [
        ({"pool": {"size": -1}}, "database.pool.size"),
        ({"replica_pool": {"timeout": 0}}, "database.replica_pool.timeout"),
        ({"breaker": {"fail_max": 0}}, "database.breaker.fail_max"),
        ({"primary": {"url": "mysql://x"}}, "database.primary.url"),
        ({"pool": {"sise": 3}}, "database.pool.sise"),
    ],
)
def test_invalid_database_settings_name_the_setting(section: dict, setting: str) -> None:
    with pytest.raises(ValidationError) as raised:
        Settings(database=section)
    assert setting in describe_error(raised.value)


def test_environment_overrides_yaml_with_nesting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREFRONT_DATABASE__POOL__SIZE", "42")
    monkeypatch.setenv(
        "STOREFRONT_DATABASE__REPLICAS", '[{"url": "postgresql://r@h/db", "weight": 3}]'
    )
    settings = Settings()
    assert settings.database.pool.size == 42
    assert settings.database.pool.max_overflow == 10  # from base.yaml, untouched
    assert settings.database.replicas[0].weight == 3
    assert settings.database.routing.health_interval_seconds == 0.2  # test.yaml over base.yaml


def test_secrets_directory_overrides_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: os.PathLike[str]
) -> None:
    secrets = os.path.join(tmp_path, "secrets")
    os.mkdir(secrets)
    with open(os.path.join(secrets, "storefront_ops__operator_token"), "w") as handle:
        handle.write("from-secret-file-123")
    monkeypatch.setenv("STOREFRONT_SECRETS_DIR", secrets)
    monkeypatch.setenv("STOREFRONT_OPS__OPERATOR_TOKEN", "from-env")
    settings = Settings()
    assert settings.ops.operator_token is not None
    assert settings.ops.operator_token.get_secret_value() == "from-secret-file-123"


def test_masked_settings_hide_passwords_and_tokens() -> None:
    settings = Settings(
        database={"primary": {"url": "postgresql://app:hunter2@db/x"}},
        ops={"operator_token": "very-secret"},
    )
    shown = str(settings.masked())
    assert "hunter2" not in shown
    assert "very-secret" not in shown
    assert "app:***@db" in shown


def test_serve_refuses_to_start_with_a_bad_pool_size() -> None:
    env = {**os.environ, "STOREFRONT_DATABASE__POOL__SIZE": "-1"}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "database.pool.size" in lines[0]
