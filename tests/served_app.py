"""Real app processes for tests: `python -m tests.served_app --port N` serves the API with
uvicorn (the options of `storefront serve`) around `Container()`, whose clock can be moved from
the outside: when `STOREFRONT_TEST_CLOCK_FILE` names a file, the clock is system time plus the
number of seconds written in it (re-read when the file's mtime changes, so a read costs a stat).

The `served_apps` fixture (imported by tests/conftest.py, so every test can ask for it) starts
such processes against the test cluster and stops them after the test:

    def test_x(served_apps):
        first = served_apps(env={"STOREFRONT_AUTH__USER_CACHE_TTL_SECONDS": "30"})
        first.move_clock(700)          # seconds ahead of system time, from now on
        httpx.get(f"{first.url}/health/live")
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

CLOCK_FILE_ENV = "STOREFRONT_TEST_CLOCK_FILE"
OPERATOR_TOKEN = "test-operator-token-0123456789"  # tests/conftest.py re-exports it


class FileClock:
    """System time plus an offset (seconds, a float) read from a file; 0 while it is absent."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._mtime: int | None = None
        self._offset = timedelta()

    def now(self) -> datetime:
        try:
            mtime = os.stat(self._path).st_mtime_ns
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            self._mtime = mtime
            text = Path(self._path).read_text().strip() if mtime is not None else ""
            self._offset = timedelta(seconds=float(text or 0))
        return datetime.now(UTC) + self._offset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()

    import uvicorn
    from dependency_injector import providers

    from app.http.serving import uvicorn_options
    from app.main import create_app
    from containers import Container

    container = Container()
    clock_file = os.environ.get(CLOCK_FILE_ENV)
    if clock_file:
        # Before anything is built: every singleton then gets this clock.
        container.clock.override(providers.Object(FileClock(clock_file)))
    app = create_app(container)
    options = uvicorn_options(container.settings())
    options.update(host=args.host, port=args.port)
    uvicorn.run(app, **options)


# -- the pytest side -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_process(process: subprocess.Popen[Any]) -> None:
    """SIGTERM, up to 10 s to exit, then SIGKILL."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@dataclass
class ServedApp:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    clock_file: Path
    log_file: Path
    _offset: float = field(default=0.0)

    def move_clock(self, seconds: float) -> None:
        """Move this process's clock `seconds` further ahead (cumulative)."""
        self._offset += seconds
        temporary = self.clock_file.with_suffix(".tmp")
        temporary.write_text(repr(self._offset))
        temporary.replace(self.clock_file)  # atomic: the app never reads half a number
        # A new mtime is what the app looks at; make sure it differs even on coarse clocks.
        stamp = time.time_ns() + 1_000_000
        os.utime(self.clock_file, ns=(stamp, stamp))

    def stop(self) -> None:
        stop_process(self.process)

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def served_env(cluster: Any) -> dict[str, str]:
    """Environment of a served app on the test cluster (settings as `STOREFRONT_*`)."""

    def url(role: str) -> str:
        dsn: str = cluster.dsn(role, user="storefront_app")
        return dsn.replace("postgresql://", "postgresql+asyncpg://")

    return {
        **os.environ,
        "STOREFRONT_ENV": "test",
        "STOREFRONT_DATABASE__PRIMARY__URL": url("primary"),
        "STOREFRONT_DATABASE__REPLICAS": f'[{{"url": "{url("replica")}"}}]',
        "STOREFRONT_DATABASE__CONNECT__SSL": "disable",
        "STOREFRONT_OPS__OPERATOR_TOKEN": OPERATOR_TOKEN,
    }


def start_app(
    cluster: Any,
    workdir: Path,
    env: dict[str, str] | None = None,
    clock_offset: float = 0.0,
    ready_within: float = 30.0,
) -> ServedApp:
    """Start one app process and wait until /health/live answers."""
    port = free_port()
    clock_file = workdir / f"clock-{port}"
    log_file = workdir / f"app-{port}.log"
    full_env = {**served_env(cluster), CLOCK_FILE_ENV: str(clock_file), **(env or {})}
    with log_file.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.served_app", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
    app = ServedApp(f"http://127.0.0.1:{port}", port, process, clock_file, log_file)
    if clock_offset:
        app.move_clock(clock_offset)
    if not _wait_live(app.url, process, ready_within):
        app.stop()
        raise RuntimeError(f"served app did not start:\n{app.log()[-4000:]}")
    return app


def _wait_live(url: str, process: subprocess.Popen[bytes], within: float) -> bool:
    """Until /health/live answers (True), the process exits or `within` passes (False)."""
    deadline = time.monotonic() + within
    while True:
        try:
            with urllib.request.urlopen(f"{url}/health/live", timeout=1):
                return True
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                return False
            time.sleep(0.1)


@contextlib.contextmanager
def serve_cli(cluster: Any, env: dict[str, str] | None = None) -> Iterator[str]:
    """The real `storefront serve` (not this launcher) on a free port; yields its base URL."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port)],
        env={**served_env(cluster), **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        if not _wait_live(base, process, 30.0):
            raise RuntimeError(f"storefront serve did not start on port {port}")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def served_apps(cluster: Any) -> Iterator[Callable[..., ServedApp]]:
    """A factory of app processes on the test cluster: `served_apps(env=..., clock_offset=...)`;
    all are stopped after the test."""
    started: list[ServedApp] = []
    with tempfile.TemporaryDirectory(prefix="storefront-served-") as workdir:

        def start(env: dict[str, str] | None = None, clock_offset: float = 0.0) -> ServedApp:
            app = start_app(cluster, Path(workdir), env, clock_offset)
            started.append(app)
            return app

        try:
            yield start
        finally:
            for app in reversed(started):
                app.stop()


if __name__ == "__main__":
    main()
