"""Local PostgreSQL primary + streaming replica for development and tests.

Built from the machine's PostgreSQL binaries (no containers), loopback-only, trust auth. Used by
`storefront dev up|down|status` (base dir `.local/pg`) and by the pytest session fixture (a temp
dir). Layout of a base dir:

    cluster.json          ports + host, written once at creation so restarts reuse them
    primary/ replica/     data directories ("absent" until they hold PG_VERSION)
    primary.log replica.log

The server refuses to run as root, so when we are root every server binary runs as an
unprivileged OS user (`postgres` if present, else a system user we create).
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import ipaddress
import json
import os
import pwd
import re
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClusterError", "LocalCluster", "ServerStatus"]

ROLES = ("primary", "replica")
STOP_MODES = ("smart", "fast", "immediate")
SUPERUSER = "postgres"
FALLBACK_OS_USER = "storefront-pg"
TIMEOUT = 60  # seconds, per subprocess; pg_ctl -w gets the same budget via -t
LOG_TAIL_LINES = 5

# `port` and `listen_addresses` are prepended per cluster; later lines win in postgresql.conf.
_SERVER_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "5",
    "hot_standby": "on",
    "hot_standby_feedback": "on",
    "wal_keep_size": "'256MB'",
    "max_connections": "200",
    "shared_buffers": "'64MB'",
    # Throwaway dev/test data: trade crash safety for speed.
    "fsync": "off",
    "full_page_writes": "off",
    "synchronous_commit": "on",
    # TCP only: socket paths under a temp dir can exceed the ~107 char sun_path limit.
    "unix_socket_directories": "''",
}

# Idempotent: runs whenever the replica still has to be cloned, so a half-finished first `up()`
# can simply be retried. CREATE DATABASE cannot run inside a DO block, hence \gexec.
_BOOTSTRAP_SQL = r"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'storefront') THEN
        CREATE ROLE storefront LOGIN CREATEROLE BYPASSRLS;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'storefront_app') THEN
        CREATE ROLE storefront_app LOGIN;
    END IF;
END
$$;
ALTER ROLE storefront LOGIN CREATEROLE BYPASSRLS;
SELECT 'CREATE DATABASE storefront OWNER storefront'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'storefront')
\gexec
"""


class ClusterError(RuntimeError):
    """A dev-cluster operation failed; the message is one human-readable line."""


@dataclass(frozen=True)
class ServerStatus:
    role: str  # "primary" | "replica"
    port: int  # 0 when the cluster was never created
    data_dir: str  # absolute path
    state: str  # "running" | "stopped" | "absent"

    def as_dict(self) -> dict[str, object]:
        return {
            "role": self.role,
            "port": self.port,
            "data_dir": self.data_dir,
            "state": self.state,
        }


@dataclass(frozen=True)
class _OsUser:
    name: str
    uid: int
    gid: int
    home: str


def _one_line(text: str, limit: int = 600) -> str:
    flat = re.sub(r"\s+", " ", text).strip()
    return flat if len(flat) <= limit else "..." + flat[-limit:]


def _find_bindir() -> Path:
    """pg_config first (the packaged default), then the newest /usr/lib/postgresql, then PATH."""
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=True,
            ).stdout.strip()
            if out and (Path(out) / "initdb").is_file():
                return Path(out)

    def version(path: str) -> tuple[int, ...]:
        name = Path(path).parent.name
        return tuple(int(p) for p in name.split(".")) if re.fullmatch(r"\d+(\.\d+)*", name) else ()

    candidates = [p for p in glob.glob("/usr/lib/postgresql/*/bin") if version(p)]
    for path in sorted(candidates, key=version, reverse=True):
        if (Path(path) / "initdb").is_file():
            return Path(path)
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).resolve().parent
    raise ClusterError("PostgreSQL server binaries not found (no pg_config, initdb or pg_ctl)")


def _ensure_os_user() -> _OsUser:
    """The unprivileged account the server runs as when we are root."""
    for name in (SUPERUSER, FALLBACK_OS_USER):
        with contextlib.suppress(KeyError):
            pw = pwd.getpwnam(name)
            return _OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)
    try:
        proc = subprocess.run(
            ["useradd", "--system", "--no-create-home", FALLBACK_OS_USER],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise ClusterError(f"cannot create OS user {FALLBACK_OS_USER}: {exc}") from exc
    try:  # a concurrent useradd may have won the race; only the user's existence matters
        pw = pwd.getpwnam(FALLBACK_OS_USER)
    except KeyError:
        raise ClusterError(
            f"cannot create OS user {FALLBACK_OS_USER}: {_one_line(proc.stderr)}"
        ) from None
    return _OsUser(pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir)


class LocalCluster:
    """A primary and one streaming replica under `base_dir`; see the module docstring."""

    def __init__(self, base_dir: str | os.PathLike[str], host: str = "127.0.0.1") -> None:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise ClusterError(f"host must be a loopback IP address, got {host!r}") from None
        if not address.is_loopback:
            raise ClusterError(f"host must be a loopback IP address, got {host!r}")
        self.host = host
        self._family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        self._prefix = address.max_prefixlen
        self.base_dir = Path(base_dir).expanduser().resolve()
        self._layout_file = self.base_dir / "cluster.json"
        self._bindir: Path | None = None
        self._os_user: _OsUser | None = None

    # ---------------------------------------------------------------- public API

    @property
    def primary_port(self) -> int:
        return self._ports()["primary"]

    @property
    def replica_port(self) -> int:
        return self._ports()["replica"]

    def up(self) -> list[ServerStatus]:
        """Create whatever is missing, start whatever is stopped; safe to call repeatedly."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        with self._lock():
            self._prepare_filesystem()
            primary_exists = self._exists("primary")
            replica_exists = self._exists("replica")
            if replica_exists and not primary_exists:
                raise ClusterError(
                    f"replica exists but primary data is missing in {self.base_dir}; "
                    "destroy the cluster and run up again"
                )
            if not primary_exists or not self._layout_file.exists():
                # Nothing built on the old ports yet, so fresh ones are free to pick.
                self._write_layout(*self._free_ports(2))
            self._check_host()
            if not primary_exists:
                self._init_primary()
            self.start("primary")
            if not replica_exists:
                self._bootstrap()
                self._clone_replica()
            self.start("replica")
            return self.status()

    def down(self) -> None:
        """Stop both servers (fast mode), replica first; keeps the data."""
        if not self.base_dir.is_dir():
            return
        with self._lock():
            for role in reversed(ROLES):
                self.stop(role)

    def destroy(self) -> None:
        """Stop both servers and delete the base dir."""
        if not self.base_dir.exists():
            return
        with self._lock():
            for role in reversed(ROLES):
                try:
                    self.stop(role)
                except ClusterError:
                    self.stop(role, mode="immediate")  # never rm a live server's data dir
            shutil.rmtree(self.base_dir)

    def status(self) -> list[ServerStatus]:
        """Primary first. Ports are 0 while the cluster has never been created."""
        ports = self._read_layout() or {}
        return [
            ServerStatus(role, ports.get(role, 0), str(self._data_dir(role)), self._state(role))
            for role in ROLES
        ]

    def start(self, role: str) -> None:
        """pg_ctl -w start; no-op if already running."""
        state = self._state(role)
        if state == "running":
            return
        if state == "absent":
            raise ClusterError(f"{role} does not exist in {self.base_dir}; run up() first")
        port = self._ports()[role]
        if self._port_in_use(port):
            raise ClusterError(
                f"{role} port {self.host}:{port} is taken by another process; free it or "
                f"destroy {self.base_dir} to recreate the cluster on new ports"
            )
        self._run(
            [
                self._bin("pg_ctl"),
                "-w",
                "-t",
                str(TIMEOUT),
                "-D",
                str(self._data_dir(role)),
                "-l",
                str(self._log_file(role)),
                "start",
            ],
            what=f"starting {role}",
            role=role,
            as_server=True,
            timeout=TIMEOUT + 30,
        )

    def stop(self, role: str, mode: str = "fast") -> None:
        """pg_ctl -w -m mode stop; no-op unless running."""
        if mode not in STOP_MODES:
            raise ClusterError(f"unknown stop mode {mode!r}; expected one of {STOP_MODES}")
        if self._state(role) != "running":
            return
        self._run(
            [
                self._bin("pg_ctl"),
                "-w",
                "-t",
                str(TIMEOUT),
                "-m",
                mode,
                "-D",
                str(self._data_dir(role)),
                "stop",
            ],
            what=f"stopping {role}",
            role=role,
            as_server=True,
            timeout=TIMEOUT + 30,
        )

    def dsn(self, role: str, user: str = "storefront", database: str = "storefront") -> str:
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"postgresql://{user}@{host}:{self._ports()[role]}/{database}"

    def psql(self, role: str, sql: str, user: str = SUPERUSER, database: str = "storefront") -> str:
        """Run one SQL string with psql -XAtq and return its stripped stdout."""
        proc = self._run(
            [*self._psql_argv(role, user, database), "-A", "-t", "-c", sql],
            what=f"psql on {role}",
        )
        return proc.stdout.strip()

    # ---------------------------------------------------------------- creation

    def _init_primary(self) -> None:
        # Build in a scratch dir and rename, so "PG_VERSION exists" always means "fully built".
        scratch = self._scratch_dir("primary")
        self._run(
            [
                self._bin("initdb"),
                "-D",
                str(scratch),
                "--auth=trust",
                "-U",
                SUPERUSER,
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ],
            what="initdb",
            as_server=True,
        )
        settings = {"port": str(self.primary_port), "listen_addresses": f"'{self.host}'"}
        self._append_conf(scratch, {**settings, **_SERVER_SETTINGS})
        nets = dict.fromkeys(["127.0.0.1/32", f"{self.host}/{self._prefix}"])
        hba = ["# storefront devcluster: loopback TCP only, trust auth"]
        for net in nets:
            hba += [f"host all all {net} trust", f"host replication all {net} trust"]
        (scratch / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        scratch.rename(self._data_dir("primary"))

    def _bootstrap(self) -> None:
        """Owner/migration role, app role and the storefront database (before cloning)."""
        self._run(
            [*self._psql_argv("primary", SUPERUSER, "postgres"), "-f", "-"],
            what="bootstrapping roles and database",
            role="primary",
            stdin=_BOOTSTRAP_SQL,
        )

    def _clone_replica(self) -> None:
        scratch = self._scratch_dir("replica")
        self._run(
            [
                self._bin("pg_basebackup"),
                "-h",
                self.host,
                "-p",
                str(self.primary_port),
                "-U",
                SUPERUSER,
                "-D",
                str(scratch),
                "-R",  # standby.signal + primary_conninfo
                "-X",
                "stream",
                "--checkpoint=fast",  # a spread checkpoint would stall the clone
                "--no-sync",
            ],
            what="pg_basebackup",
            role="primary",
            as_server=True,
        )
        self._append_conf(scratch, {"port": str(self.replica_port)})
        scratch.rename(self._data_dir("replica"))

    def _scratch_dir(self, role: str) -> Path:
        scratch = self.base_dir / f"{role}.tmp"
        shutil.rmtree(scratch, ignore_errors=True)  # leftovers of an interrupted up()
        return scratch

    @staticmethod
    def _append_conf(data_dir: Path, settings: dict[str, str]) -> None:
        lines = [f"{key} = {value}" for key, value in settings.items()]
        with (data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# storefront devcluster\n" + "\n".join(lines) + "\n")

    # ---------------------------------------------------------------- layout & filesystem

    def _read_layout(self) -> dict[str, int] | None:
        try:
            raw = json.loads(self._layout_file.read_text())
            return {role: int(raw[f"{role}_port"]) for role in ROLES}
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise ClusterError(f"corrupt {self._layout_file}: {exc}") from exc

    def _ports(self) -> dict[str, int]:
        layout = self._read_layout()
        if layout is None:
            raise ClusterError(f"no cluster in {self.base_dir}; run up() first")
        return layout

    def _write_layout(self, primary_port: int, replica_port: int) -> None:
        data = {"host": self.host, "primary_port": primary_port, "replica_port": replica_port}
        tmp = self._layout_file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self._layout_file)

    def _check_host(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            created_for = json.loads(self._layout_file.read_text()).get("host", self.host)
            if created_for != self.host:
                raise ClusterError(
                    f"cluster in {self.base_dir} listens on {created_for}, not {self.host}"
                )

    def _free_ports(self, count: int) -> list[int]:
        # Hold all sockets open together so the kernel hands out distinct ports.
        with contextlib.ExitStack() as stack:
            ports = []
            for _ in range(count):
                sock = stack.enter_context(socket.socket(self._family, socket.SOCK_STREAM))
                sock.bind((self.host, 0))
                ports.append(int(sock.getsockname()[1]))
        return ports

    def _port_in_use(self, port: int) -> bool:
        with socket.socket(self._family, socket.SOCK_STREAM) as sock:
            # Like the server itself: TIME_WAIT leftovers must not count as "taken".
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, port))
            except OSError:
                return True
        return False

    def _prepare_filesystem(self) -> None:
        """As root: the server user must own the base dir and be able to reach it."""
        user = self._server_user()
        if user is None:
            return
        if self.base_dir.stat().st_uid != user.uid:
            for dirpath, dirnames, filenames in os.walk(self.base_dir):
                os.chown(dirpath, user.uid, user.gid)
                for name in dirnames + filenames:
                    os.lchown(os.path.join(dirpath, name), user.uid, user.gid)
        # Only add o+x (traverse, not list) where missing, e.g. on a 0700 mkdtemp() parent.
        for parent in self.base_dir.parents:
            st = parent.stat()
            if st.st_uid != user.uid and not st.st_mode & stat.S_IXOTH:
                os.chmod(parent, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialises up/down/destroy across processes sharing a base dir."""
        with (self.base_dir / ".lock").open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def _data_dir(self, role: str) -> Path:
        if role not in ROLES:
            raise ClusterError(f"unknown role {role!r}; expected 'primary' or 'replica'")
        return self.base_dir / role

    def _log_file(self, role: str) -> Path:
        return self.base_dir / f"{role}.log"

    def _exists(self, role: str) -> bool:
        return (self._data_dir(role) / "PG_VERSION").is_file()

    def _state(self, role: str) -> str:
        if not self._exists(role):
            return "absent"
        proc = self._run(
            [self._bin("pg_ctl"), "status", "-D", str(self._data_dir(role))],
            what=f"pg_ctl status ({role})",
            as_server=True,
            check=False,
        )
        if proc.returncode == 0:
            return "running"
        if proc.returncode == 3:
            return "stopped"
        if proc.returncode == 4:  # data dir not accessible
            return "absent"
        raise ClusterError(
            f"pg_ctl status ({role}) exited {proc.returncode}: {_one_line(proc.stderr)}"
        )

    # ---------------------------------------------------------------- processes

    def _bin(self, name: str) -> str:
        if self._bindir is None:
            self._bindir = _find_bindir()
        return str(self._bindir / name)

    def _server_user(self) -> _OsUser | None:
        if os.geteuid() != 0:
            return None
        if self._os_user is None:
            self._os_user = _ensure_os_user()
        return self._os_user

    def _psql_argv(self, role: str, user: str, database: str) -> list[str]:
        return [
            self._bin("psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.host,
            "-p",
            str(self._ports()[role]),
            "-U",
            user,
            "-d",
            database,
        ]

    def _run(
        self,
        argv: Sequence[str],
        *,
        what: str,
        role: str | None = None,
        as_server: bool = False,
        stdin: str | None = None,
        timeout: float = TIMEOUT,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        """Run with captured output and a timeout; failures become one-line ClusterErrors.

        `as_server` drops to the unprivileged server user when root (the stdlib equivalent of
        `setpriv --reuid --regid --clear-groups`); `role` picks the log whose tail is quoted.
        """
        # Stray PG* variables (PGHOST, PGOPTIONS, ...) would silently retarget our commands.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", PGCONNECT_TIMEOUT="10")
        user = self._server_user() if as_server else None
        if user is not None:
            env.update(HOME=user.home or "/", USER=user.name, LOGNAME=user.name)
        try:
            proc = subprocess.run(
                list(argv),
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=self.base_dir if self.base_dir.is_dir() else "/",
                user=user.uid if user else None,
                group=user.gid if user else None,
                extra_groups=[] if user else None,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"{what} timed out after {timeout:g}s{self._log_tail(role)}"
            ) from None
        except OSError as exc:
            raise ClusterError(f"{what} could not run {argv[0]}: {exc}") from exc
        if check and proc.returncode != 0:
            detail = _one_line(proc.stderr or proc.stdout) or "no output"
            raise ClusterError(
                f"{what} failed (exit {proc.returncode}): {detail}{self._log_tail(role)}"
            )
        return proc

    def _log_tail(self, role: str | None) -> str:
        if role is None:
            return ""
        try:
            lines = self._log_file(role).read_text(errors="replace").splitlines()
        except OSError:
            return ""
        tail = [line.strip() for line in lines[-LOG_TAIL_LINES:] if line.strip()]
        return f" | {role}.log: " + " / ".join(tail) if tail else ""
