"""A real PgBouncer (Debian's `pgbouncer`, installed by the test set-up when missing) in front
of the test cluster, in transaction pooling mode.

`PgBouncer(cluster, workdir)` writes `pgbouncer.ini` and `userlist.txt` into `workdir` and starts
the binary on a free loopback port, as an unprivileged OS user when we are root (PgBouncer
refuses to run as root). Two databases: `storefront` (the primary) and `storefront_replica`
(the replica). Each (database, user) pair gets ONE server connection (`default_pool_size = 1`),
so every client of a role shares one PostgreSQL session: what one transaction leaves on the
session, the next client's transaction sees. `admin(sql)` runs a command on the admin console
(`SHOW SERVERS`, ...) with psql (the console speaks only the simple query protocol).
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path

from app.devcluster import LocalCluster
from tests.served_app import free_port, stop_process
from tests.tooling import debian_tool

DATABASES = {"primary": "storefront", "replica": "storefront_replica"}
USERS = ("storefront_app", "storefront", "postgres")
ADMIN = "postgres"

_INI = """\
[databases]
{databases}

[pgbouncer]
listen_addr = {host}
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {workdir}/userlist.txt
admin_users = {admin}
pool_mode = transaction
default_pool_size = 1
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = 500
; nothing the app sends needs ignoring (application_name is tracked, statement_timeout is not
; sent when database.pgbouncer is true); asyncpg sends no extra_float_digits either
ignore_startup_parameters =
; a client waiting longer than this for the one server connection fails, never hangs a test
query_wait_timeout = 20
server_check_delay = 0
pidfile = {workdir}/pgbouncer.pid
log_connections = 0
log_disconnections = 0
"""


def _os_user() -> pwd.struct_passwd | None:
    """None when not root; else the cluster's server account (created by `LocalCluster`)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "storefront-pg"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("no unprivileged OS user to run pgbouncer as (start the cluster first)")


class PgBouncer:
    def __init__(self, cluster: LocalCluster, workdir: Path) -> None:
        self.binary = debian_tool("pgbouncer", "pgbouncer")
        self.cluster = cluster
        self.host = cluster.host
        self.port = free_port()
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ports = {"primary": cluster.primary_port, "replica": cluster.replica_port}
        databases = "\n".join(
            f"{name} = host={self.host} port={ports[role]} dbname=storefront"
            for role, name in DATABASES.items()
        )
        self.ini = workdir / "pgbouncer.ini"
        self.ini.write_text(
            _INI.format(
                databases=databases, host=self.host, port=self.port, workdir=workdir, admin=ADMIN
            )
        )
        (workdir / "userlist.txt").write_text("".join(f'"{user}" ""\n' for user in USERS))
        user = _os_user()
        if user is not None:
            for path in (workdir, *workdir.iterdir()):
                os.chown(path, user.pw_uid, user.pw_gid)
        # Its log goes to pgbouncer.log and to stderr: a file, never an unread pipe.
        self._stderr = (workdir / "stderr.log").open("wb")
        self._process = subprocess.Popen(
            [self.binary, str(self.ini)],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            user=user.pw_uid if user else None,
            group=user.pw_gid if user else None,
            extra_groups=[] if user else None,
        )
        deadline = time.monotonic() + 15
        while not self._accepting():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"pgbouncer did not start: {self.log_tail()}")
            time.sleep(0.05)

    def _accepting(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def dsn(self, role: str, user: str = "storefront_app") -> str:
        return f"postgresql://{user}@{self.host}:{self.port}/{DATABASES[role]}"

    def url(self, role: str) -> str:
        """The application's SQLAlchemy URL through PgBouncer."""
        return self.dsn(role).replace("postgresql://", "postgresql+asyncpg://")

    def admin(self, sql: str) -> list[dict[str, str]]:
        """A command on the admin console; its rows as dicts (column names from the header)."""
        psql = shutil.which("psql") or "psql"
        where = ("-h", self.host, "-p", str(self.port), "-U", ADMIN, "-d", "pgbouncer")
        done = subprocess.run(
            [psql, "-X", "-A", "-F", "\t", "-P", "footer=off", *where, "-c", sql],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env={k: v for k, v in os.environ.items() if not k.startswith("PG")},
        )
        header, *rows = done.stdout.splitlines()
        names = header.split("\t")
        return [dict(zip(names, row.split("\t"), strict=True)) for row in rows]

    def servers(self, role: str, user: str = "storefront_app") -> list[dict[str, str]]:
        """PgBouncer's server connections of one pool."""
        return [
            s
            for s in self.admin("SHOW SERVERS")
            if s["database"] == DATABASES[role] and s["user"] == user
        ]

    def log(self) -> str:
        """Everything PgBouncer wrote (its stderr holds the log too, and start-up errors)."""
        return (self.workdir / "stderr.log").read_text(errors="replace")

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log().splitlines()[-lines:])

    def stop(self) -> None:
        stop_process(self._process)
        self._stderr.close()
