"""Rehearsals of a release's schema changes: a scratch database on the test cluster migrated to
a chosen revision, the offline SQL of each revision, and the previous release's code.

`deploy/previous-release` holds the commit of the last release; `previous_release_tree()`
extracts that commit's files (`git archive`) so its app can run against a schema of this tree.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import tarfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import Script, ScriptDirectory

from alembic import command
from app.devcluster import LocalCluster
from app.ops.service import ALEMBIC_INI

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS_RELEASE_FILE = ROOT / "deploy" / "previous-release"


def alembic_config(url: str | None = None, output: io.StringIO | None = None) -> Config:
    config = Config(str(ALEMBIC_INI), output_buffer=output)
    if url is not None:
        config.attributes["url"] = url
    config.attributes["app_role"] = "storefront_app"
    return config


def revisions() -> list[Script]:
    """Every revision of this tree, oldest first."""
    scripts = ScriptDirectory.from_config(alembic_config())
    return list(reversed(list(scripts.walk_revisions())))


def offline_sql(script: Script) -> str:
    """The SQL `alembic upgrade <down>:<revision> --sql` prints: this revision's alone."""
    output = io.StringIO()
    down = script.down_revision
    target = script.revision if down is None else f"{down}:{script.revision}"
    assert isinstance(down, str | None), "merge revisions are not expected here"
    command.upgrade(alembic_config(output=output), target, sql=True)
    return output.getvalue()


@dataclass(frozen=True)
class ScratchDatabase:
    cluster: LocalCluster
    name: str

    def owner_dsn(self) -> str:
        return self.cluster.dsn("primary", database=self.name)

    def app_url(self, role: str) -> str:
        dsn = self.cluster.dsn(role, user="storefront_app", database=self.name)
        return dsn.replace("postgresql://", "postgresql+asyncpg://")

    def migrate(self, revision: str) -> None:
        command.upgrade(alembic_config(self.owner_dsn()), revision)

    def psql(self, sql: str) -> str:
        return self.cluster.psql("primary", sql, database=self.name)

    def settings_env(self) -> dict[str, str]:
        """`STOREFRONT_*` variables pointing an app or CLI process at this database."""
        return {
            "STOREFRONT_DATABASE__PRIMARY__URL": self.app_url("primary"),
            "STOREFRONT_DATABASE__REPLICAS": f'[{{"url": "{self.app_url("replica")}"}}]',
            "STOREFRONT_DATABASE__MIGRATION_URL": self.owner_dsn(),
        }


@contextlib.contextmanager
def scratch_database(cluster: LocalCluster, revision: str) -> Iterator[ScratchDatabase]:
    """A new database on the cluster (the replica follows it), migrated to `revision`;
    dropped afterwards."""
    database = ScratchDatabase(cluster, f"rehearsal_{uuid.uuid4().hex[:12]}")
    cluster.psql("primary", f"CREATE DATABASE {database.name} OWNER storefront")
    try:
        database.migrate(revision)
        yield database
    finally:
        cluster.psql("primary", f"DROP DATABASE IF EXISTS {database.name} WITH (FORCE)")


def previous_release() -> str:
    """The commit recorded in deploy/previous-release, verified to exist in this clone."""
    commit = PREVIOUS_RELEASE_FILE.read_text().strip()
    found = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        capture_output=True,
        text=True,
    )
    if found.returncode != 0:
        pytest.fail(
            f"the previous release {commit} (deploy/previous-release) is not in this clone:"
            " the old-code-on-new-schema test needs the full history (git fetch --unshallow)",
            pytrace=False,
        )
    return found.stdout.strip()


def previous_release_tree(into: Path) -> Path:
    """The previous release's files (git archive of its commit) under `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", previous_release()],
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into
