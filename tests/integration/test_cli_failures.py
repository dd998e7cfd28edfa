"""Every `storefront` command, run as a real process against a bad target, fails with exactly
one line on stderr and exit code 1; in the `dev` env the CLI finds the local cluster through
`.local/dev.env` on its own.

The commands are enumerated from the typer app, so a new command fails
`test_every_command_has_a_bad_target` until it is added to `BAD_TARGETS` (and to the README's
command table: `test_the_readme_lists_every_command`)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import typer

from app.cli import cli
from app.devcluster import LocalCluster
from tests.conftest import app_url
from tests.served_app import free_port

ROOT = Path(__file__).resolve().parents[2]

# The kinds of bad target: `database` (a URL whose port nobody listens on), `port` (the
# address to serve on is taken), `local` (a broken STOREFRONT_LOCAL_DIR), `redis` (a Redis
# nobody answers on), `output` (stdout is a full disk: /dev/full), `settings` (an invalid one).
BAD_TARGETS: dict[tuple[str, ...], tuple[str, list[str]]] = {
    ("serve",): ("port", ["--port", "{port}"]),
    ("migrate", "up"): ("database", []),
    ("migrate", "backfill"): ("database", ["order_line_amounts"]),
    ("config", "show"): ("settings", []),
    ("dev", "up"): ("local", []),
    ("dev", "down"): ("local", []),
    ("dev", "status"): ("local", ["--json"]),
    ("dev", "seed"): ("database", []),
    ("db", "status"): ("database", []),
    ("tenants", "create"): ("database", ["--slug", "acme", "--name", "Acme"]),
    ("tenants", "list"): ("database", []),
    ("tenants", "set-plan"): ("database", ["acme", "pro"]),
    ("tenants", "api-version"): ("database", ["acme", "2026-11-23"]),
    ("api", "usage"): ("database", ["--deprecated"]),
    ("api", "changelog"): ("output", []),
    ("tenants", "override"): ("database", ["acme", "burst=5"]),
    ("limits", "show"): ("database", ["--tenant", "acme"]),
    ("api-keys", "create"): ("database", ["--tenant", "acme", "--scopes", "catalog:read"]),
    ("api-keys", "revoke"): (
        "database",
        ["--tenant", "acme", "--id", "00000000-0000-0000-0000-000000000001"],
    ),
    ("users", "create"): (
        "database",
        ["--tenant", "acme", "--email", "a@acme.example", "--password", "a long passphrase"],
    ),
    ("auth", "permissions"): ("output", []),
    ("auth", "keygen"): ("output", ["--kid", "k-1"]),
    ("auth", "unlock"): ("redis", ["--address", "127.0.0.1"]),
    ("worker",): ("database", ["--once"]),
    ("sandbox-gateway",): ("port", ["--port", "{port}"]),
    ("events", "dead-letters"): ("database", []),
    ("events", "retry"): ("database", ["--all"]),
    ("events", "replay"): ("database", ["--projection", "sales_daily"]),
    ("flags", "list"): ("database", []),
    ("flags", "set"): ("database", ["catalog.search_prefix", "--enabled"]),
    ("flags", "override"): ("database", ["catalog.search_prefix", "on", "--tenant", "acme"]),
    ("secrets", "keygen"): ("output", []),
    ("secrets", "rotate-key"): ("database", []),
}


def _command_paths(command: object, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        yield prefix
        return
    for name, sub in subcommands.items():
        if not getattr(sub, "hidden", False):
            yield from _command_paths(sub, (*prefix, name))


COMMANDS = sorted(_command_paths(typer.main.get_command(cli)))


def _clean_env(**settings: str) -> dict[str, str]:
    """The machine's environment without any STOREFRONT_ variable (the suite sets
    STOREFRONT_ENV=test), plus `settings`."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
    return {**kept, **settings}


def _storefront(
    *args: str,
    env: dict[str, str],
    cwd: Path | None = None,
    stdout: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=120,
    )


def test_every_command_has_a_bad_target() -> None:
    assert len(COMMANDS) >= 28
    assert set(COMMANDS) == set(BAD_TARGETS), "add the new command to BAD_TARGETS"


def test_the_readme_lists_every_command() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## The `storefront` command", 1)[1].split("\n## ", 1)[0]
    cells = [row.split(" | ", 1)[0] for row in section.splitlines() if row.startswith("| `")]
    for path in COMMANDS:
        *group, name = path
        head = f"storefront {' '.join(group)}".rstrip()
        listed = any(
            (f"`{head} " in cell or f"`{head}`" in cell)
            and re.search(rf"(storefront |\\\| |{re.escape(head)} ){re.escape(name)}\b", cell)
            for cell in cells
        )
        assert listed, f"README's command table does not list `storefront {' '.join(path)}`"
    groups = {path[0] for path in COMMANDS}
    for mentioned in re.findall(r"`storefront ([a-z-]+)", "\n".join(cells)):
        assert mentioned in groups, f"README lists `storefront {mentioned}`, which does not exist"


@pytest.fixture
def broken_local_dir(tmp_path: Path) -> Path:
    """A STOREFRONT_LOCAL_DIR whose cluster layout is corrupt and whose lock is a directory."""
    local = tmp_path / "local"
    (local / "pg" / ".lock").mkdir(parents=True)
    (local / "pg" / "cluster.json").write_text("{")
    return local


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield listener.getsockname()[1]


def test_every_command_fails_in_one_line_against_a_bad_target(
    broken_local_dir: Path, taken_port: int
) -> None:
    nowhere = f"postgresql+asyncpg://storefront_app@127.0.0.1:{free_port()}/storefront"
    targets = {
        "database": {
            "STOREFRONT_DATABASE__PRIMARY__URL": nowhere,
            "STOREFRONT_DATABASE__MIGRATION_URL": nowhere,
        },
        "redis": {"STOREFRONT_REDIS__URL": f"redis://127.0.0.1:{free_port()}/0"},
        "settings": {"STOREFRONT_DATABASE__POOL__SIZE": "0"},
    }

    def attempt(path: tuple[str, ...]) -> tuple[tuple[str, ...], str | None]:
        kind, args = BAD_TARGETS[path]
        env = _clean_env(
            STOREFRONT_ENV="test",
            STOREFRONT_DATABASE__REPLICAS="[]",
            STOREFRONT_LOCAL_DIR=str(broken_local_dir),
            **targets.get(kind, {}),
        )
        argv = [*path, *(a.replace("{port}", str(taken_port)) for a in args)]
        if kind == "output":
            with open("/dev/full", "w") as full:
                result = _storefront(*argv, env=env, stdout=full.fileno())
        else:
            result = _storefront(*argv, env=env)
        lines = result.stderr.splitlines()
        if result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: "):
            return path, None
        return path, f"exit {result.returncode}, stderr {result.stderr[-800:]!r}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = dict(pool.map(attempt, COMMANDS))
    wrong = {" ".join(path): why for path, why in outcomes.items() if why is not None}
    assert wrong == {}


def test_a_wrong_role_is_named_in_the_one_line(cluster: LocalCluster) -> None:
    wrong = app_url(cluster, "primary").replace("storefront_app@", "no_such_role@")
    env = _clean_env(
        STOREFRONT_ENV="test",
        STOREFRONT_DATABASE__PRIMARY__URL=wrong,
        STOREFRONT_DATABASE__REPLICAS="[]",
        STOREFRONT_DATABASE__CONNECT__SSL="disable",
    )
    result = _storefront("tenants", "list", env=env)
    assert result.returncode == 1
    assert result.stderr == (
        'error: cannot connect to the database: role "no_such_role" does not exist\n'
    )
    debug = _storefront("--debug", "tenants", "list", env=env)
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr


def _write_dev_env(path: Path, cluster: LocalCluster) -> None:
    """What `storefront dev up` writes (`KEY='value'` lines), for the test cluster."""
    env = {
        "STOREFRONT_DATABASE__PRIMARY__URL": app_url(cluster, "primary"),
        "STOREFRONT_DATABASE__REPLICAS": json.dumps(
            [{"url": app_url(cluster, "replica"), "weight": 1}]
        ),
        "STOREFRONT_DATABASE__CONNECT__SSL": "disable",
        "STOREFRONT_OPS__OPERATOR_TOKEN": "dev-env-token",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))


def test_the_dev_env_reads_the_local_dev_env_file(cluster: LocalCluster, tmp_path: Path) -> None:
    _write_dev_env(tmp_path / ".local" / "dev.env", cluster)
    cluster.psql(
        "primary",
        "INSERT INTO tenants (id, slug, name) VALUES (gen_random_uuid(), 'from-dev-env', 'D')",
    )
    listed = _storefront("tenants", "list", env=_clean_env(), cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.startswith("from-dev-env\t")

    def primary_url(**env: str) -> str:
        shown = _storefront("config", "show", env=_clean_env(**env), cwd=tmp_path)
        assert shown.returncode == 0, shown.stderr
        url: str = json.loads(shown.stdout)["database"]["primary"]["url"]
        return url

    assert primary_url() == app_url(cluster, "primary")
    # A real environment variable wins over the file; another env does not read it at all.
    assert primary_url(STOREFRONT_DATABASE__PRIMARY__URL="postgresql://x@h/y") == (
        "postgresql://x@h/y"
    )
    assert primary_url(STOREFRONT_ENV="test") != app_url(cluster, "primary")
    # STOREFRONT_LOCAL_DIR moves it, as it moves everything `storefront dev` keeps.
    moved = tmp_path / "elsewhere"
    (tmp_path / ".local").rename(moved)
    assert primary_url() != app_url(cluster, "primary")
    assert primary_url(STOREFRONT_LOCAL_DIR=str(moved)) == app_url(cluster, "primary")
