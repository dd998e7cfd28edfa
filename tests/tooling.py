"""Third-party tools the suite runs (Chromium, promtool, Spectral, ...), installed by the test
set-up when missing: Debian packages with apt-get, npm packages into `.cache/tools/npm`.

An install that cannot happen (no root and no password-less sudo, no registry) fails the test
that needs the tool, saying what to install: a missing tool never passes for a tested one.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NPM_PREFIX = ROOT / ".cache" / "tools" / "npm"
_LOCK = Path("/tmp/storefront-tool-install.lock")


@contextmanager
def _installing() -> Iterator[None]:
    """One install at a time on the machine (two checkouts' suites share dpkg's lock)."""
    with _LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _run(*command: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)


def _which(binary: str) -> str | None:
    """PATH, then the sbin directories (daemons such as pgbouncer live in /usr/sbin, which a
    non-login or unprivileged PATH often lacks)."""
    sbin = ("/usr/local/sbin", "/usr/sbin", "/sbin")
    return shutil.which(binary, path=os.pathsep.join([os.environ.get("PATH", ""), *sbin]))


def debian_tool(binary: str, package: str) -> str:
    """The path of `binary`, installing Debian's `package` when it is missing. A failed install
    fails the test (CI runs as root and must test the real tool); only a non-root developer
    machine installs through password-less `sudo`, or the test fails saying what to install."""
    found = _which(binary)
    if found:
        return found
    root: tuple[str, ...] = () if os.geteuid() == 0 else ("sudo", "-n")
    if root and shutil.which("sudo") is None:
        pytest.fail(f"{binary} missing and no root to install it: apt-get install {package}")
    with _installing():
        if not _which(binary):
            install = (*root, "apt-get", "install", "-y", "--no-install-recommends", package)
            done = _run(*install)
            if done.returncode != 0:  # stale package lists: refresh once, then retry
                _run(*root, "apt-get", "update")
                done = _run(*install)
            if done.returncode != 0:
                pytest.fail(f"apt-get install {package} failed: {done.stderr.strip()[-300:]}")
    found = _which(binary)
    if not found:
        pytest.fail(f"{package} installed no {binary}")
    return found


def npm_tool(binary: str, *packages: str) -> str:
    """The path of an npm package's `binary` under .cache/tools/npm, installing when missing."""
    return str(_npm_installed(NPM_PREFIX / "node_modules" / ".bin" / binary, packages))


def npm_package(name: str, spec: str) -> Path:
    """The directory of the npm package `name` (a library, no binary) under .cache/tools/npm,
    installing `spec` (e.g. `oidc-provider@9.13.3`) when missing."""
    return _npm_installed(NPM_PREFIX / "node_modules" / name, (spec,))


def _npm_installed(path: Path, packages: tuple[str, ...]) -> Path:
    if path.exists():
        return path
    if not shutil.which("npm"):
        pytest.fail(f"npm missing: cannot install {' '.join(packages)}")
    with _installing():
        if not path.exists():
            NPM_PREFIX.mkdir(parents=True, exist_ok=True)
            done = _run(
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(NPM_PREFIX),
                *packages,
            )
            if done.returncode != 0:
                pytest.fail(f"npm install {' '.join(packages)} failed: {done.stderr[-300:]}")
    return path


PY_TOOLS = ROOT / ".cache" / "tools" / "py"


def python_tool(binary: str, requirement: str) -> str:
    """A PyPI tool in its own virtual environment under .cache/tools/py (its pins, such as
    openapi-python-client's typer, must not move the project's own)."""
    venv = PY_TOOLS / binary
    path = venv / "bin" / binary
    if path.exists():
        return str(path)
    with _installing():
        if not path.exists():
            created = _run(sys.executable, "-m", "venv", str(venv))
            if created.returncode != 0:
                pytest.fail(f"cannot create a venv for {requirement}: {created.stderr[-300:]}")
            done = _run(str(venv / "bin" / "pip"), "install", "--quiet", requirement)
            if done.returncode != 0:
                pytest.fail(f"pip install {requirement} failed: {done.stderr[-300:]}")
    return str(path)
