"""Load-benchmark orchestrator: `.venv/bin/python -m bench.run [--scenario NAME ...]`.

Brings up its own PostgreSQL primary + replica (`app.devcluster.LocalCluster`), prepares and serves
Storefront through its CLI, serves the two read reference apps (`bench.reference_bare`,
`bench.reference_tutorial`) against the replica and the order reference (`bench.reference_orders`)
against the primary, drives each with wrk and prints a markdown table.
Everything listens on 127.0.0.1, every wrk run is bounded by `--duration`, and every process it
starts is stopped again (servers, then the cluster) however the run ends.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import resource
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import asyncpg

from app.devcluster import ClusterError, LocalCluster
from app.identity.tokens import generate_signing_key

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # run as .venv/bin/python, so this is the venv's bin
CLUSTER_DIR = ".local/bench"
# --only-reference makes its own `products` table; kept apart so it never blocks the migrations.
REFERENCE_CLUSTER_DIR = ".local/bench-reference"
LOG_DIR = ROOT / ".local" / "bench-logs"  # outside CLUSTER_DIR, which LocalCluster chowns
STATUS_SCRIPT = Path(__file__).resolve().parent / "wrk_status.lua"
HOST = "127.0.0.1"
API_KEY = "X-API-Key"
WARMUP_SECONDS = 2
SEED_PRODUCTS = 50
REFERENCE_POOL_SIZE = 20
# Fixed id for the --only-reference row, so re-runs on the same cluster directory find it again.
REFERENCE_PRODUCT_ID = "00000000-0000-4000-8000-000000000001"
REFERENCE_TENANT_ID = "00000000-0000-4000-8000-0000000000aa"


class BenchError(RuntimeError):
    """A setup step failed; the message says which and where its log is."""


@dataclass(frozen=True)
class PoolConfig:
    """Pool settings of both roles, plus optionally the edge's door (server.*)."""

    size: int
    max_overflow: int
    timeout: float
    queue_timeout: float | None = None  # None: the app's default

    def env(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.queue_timeout is not None:
            out["STOREFRONT_SERVER__QUEUE_TIMEOUT_SECONDS"] = str(self.queue_timeout)
        for section in ("POOL", "REPLICA_POOL"):
            prefix = f"STOREFRONT_DATABASE__{section}__"
            out[prefix + "SIZE"] = str(self.size)
            out[prefix + "MAX_OVERFLOW"] = str(self.max_overflow)
            out[prefix + "TIMEOUT"] = str(self.timeout)
        return out


# Same connection budget as the bare app's fixed pool of 20, so read-* compares code, not pools.
READ_POOLS = PoolConfig(size=REFERENCE_POOL_SIZE, max_overflow=0, timeout=5.0)


@dataclass(frozen=True)
class Scenario:
    name: str
    clients: int
    targets: tuple[str, ...]
    pools: PoolConfig = READ_POOLS
    wrk_timeout: str | None = None  # None: wrk's default of 2 s
    count_statuses: bool = False  # run with wrk_status.lua (costs a Lua call per response)
    order_products: int = 0  # > 0: POST /v1/orders cycling through this many products
    about: str = ""


WS_SCENARIO = "ws-500"
SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "read-64",
            64,
            (
                "storefront",
                "bare",
                "tutorial",
                "storefront-list",
                "storefront-jwt",
                "storefront-nolog",
                "storefront-nolimit",
                "storefront-redis",
            ),
            about="GET by id at 64 clients on all three apps (Storefront with the production"
            " defaults: access log, metrics, rate limits, the door), plus Storefront's list"
            " endpoint, GET by id with a bearer access token instead of an API key, and GET by"
            " id with the access log off, with rate limiting off and with it counted in Redis"
            " (the default counts in memory)",
        ),
        Scenario(
            "read-200",
            200,
            ("storefront", "bare", "tutorial", "storefront-list"),
            about="the same at 200 clients (more clients than any pool has connections)",
        ),
        Scenario(
            "pool-5-200",
            200,
            ("storefront",),
            pools=PoolConfig(size=5, max_overflow=5, timeout=5.0),
            about="Storefront with pools of 5 + 5 overflow under 200 clients: queueing, no errors",
        ),
        Scenario(
            "overload",
            1000,
            ("storefront",),
            pools=PoolConfig(size=2, max_overflow=0, timeout=0.5),
            wrk_timeout="5s",
            count_statuses=True,
            about="pools of 2, 0.5 s checkout timeout, 1000 clients: fast 503 + Retry-After",
        ),
        Scenario(
            "overload-tight",
            1000,
            ("storefront",),
            pools=PoolConfig(size=2, max_overflow=0, timeout=0.5, queue_timeout=0.2),
            wrk_timeout="5s",
            count_statuses=True,
            about="the same with a 0.2 s wait at the door: some 503 server.busy, all with"
            " Retry-After",
        ),
        Scenario(
            "orders-32-distinct",
            32,
            ("storefront-orders", "reference-orders"),
            count_statuses=True,
            order_products=64,
            about="POST /v1/orders (one unit, tok_ok, a new Idempotency-Key each) at 32 clients"
            " spread over 64 products, and the same order on the bare reference (one"
            " transaction, same tenant, same rows)",
        ),
        Scenario(
            "orders-32-hot",
            32,
            ("storefront-orders", "reference-orders"),
            count_statuses=True,
            order_products=1,
            about="the same with every order on one hot product (its row lock serializes them)",
        ),
    )
}
STOREFRONT_TARGETS = frozenset(
    {
        "storefront",
        "storefront-list",
        "storefront-jwt",
        "storefront-orders",
        "storefront-nolog",
        "storefront-nolimit",
        "storefront-redis",
    }
)
# Reference apps on Storefront's migrated schema and seeded tenant: they need Storefront prepared.
SCHEMA_TARGETS = STOREFRONT_TARGETS | {"reference-orders"}
# The denominator of each ratio line, and the rows measured against it.
RATIOS = {
    "bare": (
        "storefront",
        "tutorial",
        "storefront-nolog",
        "storefront-nolimit",
        "storefront-redis",
    ),
    "tutorial": ("storefront", "storefront-nolog"),
    "reference-orders": ("storefront-orders",),
}
# Targets served by a Storefront with settings of their own (the server restarts for them).
VARIANTS = {
    "storefront-nolog": {"STOREFRONT_LOGGING__ACCESS_LOG": "false"},
    "storefront-nolimit": {"STOREFRONT_RATE_LIMITS__ENABLED": "false"},
    "storefront-redis": {"STOREFRONT_REDIS__URL": "<redis>"},  # the bench's own Redis
}
BENCH_USER = "bench-user@bench.example"
BENCH_PASSWORD = "bench-user-password-1"  # the bench's own throwaway cluster


@dataclass(frozen=True)
class Target:
    name: str
    url: str
    headers: tuple[tuple[str, str], ...] = ()


@dataclass
class WrkResult:
    requests_per_sec: float
    requests: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    non_2xx: int = 0
    connect_errors: int = 0
    read_errors: int = 0
    write_errors: int = 0
    timeout_errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    missing_retry_after: int | None = None

    @property
    def socket_errors(self) -> str:
        return f"{self.connect_errors}/{self.read_errors}/{self.write_errors}/{self.timeout_errors}"


@dataclass(frozen=True)
class Row:
    scenario: str
    target: str
    clients: int
    result: WrkResult


# --------------------------------------------------------------------------------------------
# wrk


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise BenchError("wrk is not installed and apt-get is unavailable: install wrk first")
    print("wrk not found: installing it with apt-get", flush=True)
    apt_env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", "wrk"]):
        proc = subprocess.run(argv, env=apt_env, capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            raise BenchError(f"`{' '.join(argv)}` failed:\n" + "\n".join(tail))
    path = shutil.which("wrk")
    if path is None:
        raise BenchError("apt-get installed wrk but it is not on PATH")
    return path


_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unrecognised wrk duration {text!r}")
    return float(match[1]) * _UNIT_MS[match[2]]


def parse_wrk(output: str) -> WrkResult:
    """Reads wrk's `--latency` report (plus wrk_status.lua's lines when present)."""

    def find(pattern: str) -> re.Match[str] | None:
        return re.search(pattern, output, re.MULTILINE)

    rps = find(r"^Requests/sec:\s+([\d.]+)")
    total = find(r"^\s*(\d+) requests in ")
    latency = find(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)")
    p50 = find(r"^\s*50(?:\.0+)?%\s+(\S+)")
    p99 = find(r"^\s*99(?:\.0+)?%\s+(\S+)")
    if not (rps and total and latency and p50 and p99):
        raise BenchError("could not parse wrk output:\n" + output)
    result = WrkResult(
        requests_per_sec=float(rps[1]),
        requests=int(total[1]),
        p50_ms=_ms(p50[1]),
        p99_ms=_ms(p99[1]),
        max_ms=_ms(latency[3]),
    )
    # wrk prints these two lines only when the counts are non-zero.
    if non_2xx := find(r"^\s*Non-2xx or 3xx responses:\s+(\d+)"):
        result.non_2xx = int(non_2xx[1])
    errors = find(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
    if errors:
        result.connect_errors, result.read_errors, result.write_errors, result.timeout_errors = (
            int(g) for g in errors.groups()
        )
    for status, count in re.findall(r"^wrk_status status (\d+) (\d+)$", output, re.MULTILINE):
        result.statuses[int(status)] = int(count)
    if missing := find(r"^wrk_status missing_retry_after (\d+)$"):
        result.missing_retry_after = int(missing[1])
    return result


def run_wrk(
    wrk: str,
    target: Target,
    *,
    clients: int,
    duration: int,
    timeout: str | None = None,
    script: Path | None = None,
    script_args: Sequence[str] = (),
) -> WrkResult:
    argv = [wrk, "-t2", f"-c{clients}", f"-d{duration}s", "--latency"]
    if timeout:
        argv += ["--timeout", timeout]
    for name, value in target.headers:
        argv += ["-H", f"{name}: {value}"]
    if script:
        argv += ["-s", str(script)]
    argv.append(target.url)
    if script_args:
        argv += ["--", *script_args]
    # wrk stops itself after -d; the subprocess timeout only guards against a hung wrk.
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    if proc.returncode != 0:
        raise BenchError(f"wrk failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
    return parse_wrk(proc.stdout)


def wrk_version(wrk: str) -> str:
    proc = subprocess.run([wrk, "-v"], capture_output=True, text=True, timeout=10)
    first = (proc.stdout or proc.stderr).strip().splitlines()
    return first[0].split(" [")[0] if first else "wrk"


# --------------------------------------------------------------------------------------------
# processes and HTTP


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def http(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: Any = None,
    form: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, bytes]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers or {}))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if form is not None:
        request.data = urllib.parse.urlencode(form).encode()
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


class Server:
    """One uvicorn process, in its own process group so teardown reaches anything it spawns."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], port: int) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env)
        self.port = port
        self.log_path = LOG_DIR / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self, ready_path: str, ready_status: int | None, timeout: float = 60.0) -> None:
        """Starts and waits until `ready_path` answers (`ready_status`, or any status if None)."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=ROOT,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(
                    f"{self.name} exited with {self.proc.returncode}; see {self.log_path}"
                )
            try:
                status, body = http("GET", self.base_url + ready_path, timeout=2.0)
            except OSError as error:
                last = str(error)
            else:
                if ready_status is None or status == ready_status:
                    return
                last = f"{status} {body[:200]!r}"
            time.sleep(0.2)
        raise BenchError(
            f"{self.name} not ready after {timeout:.0f} s ({last}); see {self.log_path}"
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(proc.pid, sig)  # the group we created with start_new_session
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue


def uvicorn_argv(app: str, port: int) -> list[str]:
    # One worker, uvloop + httptools picked automatically by uvicorn[standard].
    return [
        str(BIN / "uvicorn"),
        app,
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def raise_fd_limit(minimum: int = 8192) -> None:
    """1000 wrk connections plus as many server sockets need more than a default 1024 fds."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = minimum if hard == resource.RLIM_INFINITY else min(minimum, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# --------------------------------------------------------------------------------------------
# database


def sqlalchemy_url(dsn: str) -> str:
    return "postgresql+asyncpg://" + dsn.split("://", 1)[1]


def wait_for_rows(dsn: str, ids: Sequence[str], timeout: float = 30.0) -> None:
    """Blocks until every id is readable at `dsn` (the replica lags the primary a little)."""

    async def poll() -> None:
        deadline = time.monotonic() + timeout
        conn = await asyncpg.connect(dsn, timeout=5)
        try:
            while True:
                found = await conn.fetchval(
                    "SELECT count(*) FROM products WHERE id = ANY($1::uuid[])", list(ids)
                )
                if found == len(ids):
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"replica shows {found}/{len(ids)} products after {timeout} s")
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    asyncio.run(poll())


def tenant_id(owner_dsn: str, slug: str) -> str:
    """The id of the tenant `slug` (read as the owner: the tenants table is not tenant-scoped)."""

    async def query() -> str:
        conn = await asyncpg.connect(owner_dsn, timeout=5)
        try:
            found = await conn.fetchval("SELECT id FROM tenants WHERE slug = $1", slug)
        finally:
            await conn.close()
        if found is None:
            raise BenchError(f"no tenant {slug!r} in the bench database")
        return str(found)

    return asyncio.run(query())


REFERENCE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS products (
    id uuid PRIMARY KEY,
    tenant_id uuid NOT NULL,
    sku text NOT NULL,
    name text NOT NULL,
    description text,
    price_amount bigint NOT NULL,
    price_currency char(3) NOT NULL,
    stock integer NOT NULL,
    version integer NOT NULL DEFAULT 1,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO products (id, tenant_id, sku, name, description, price_amount, price_currency, stock)
VALUES ('{REFERENCE_PRODUCT_ID}', '{REFERENCE_TENANT_ID}', 'bench-1', 'Bench product',
        'Reference row for bench/run.py --only-reference', 1299, 'EUR', 100)
ON CONFLICT (id) DO NOTHING;
"""


# --------------------------------------------------------------------------------------------
# Storefront


class Storefront:
    """Storefront's CLI and server, with the env dict built once and pool settings overlaid."""

    def __init__(self, cluster: LocalCluster, port: int) -> None:
        primary = cluster.dsn("primary", user="storefront_app")
        replica = cluster.dsn("replica", user="storefront_app")
        # The caller's own STOREFRONT_* variables would make runs differ from the documented ones.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith("STOREFRONT_")}
        self.env: dict[str, str] = {
            **inherited,
            "STOREFRONT_ENV": "bench",
            "STOREFRONT_DATABASE__PRIMARY__URL": sqlalchemy_url(primary),
            "STOREFRONT_DATABASE__MIGRATION_URL": sqlalchemy_url(
                cluster.dsn("primary", user="storefront")
            ),
            "STOREFRONT_DATABASE__REPLICAS": json.dumps(
                [{"url": sqlalchemy_url(replica), "weight": 1}]
            ),
            "STOREFRONT_OPS__OPERATOR_TOKEN": "bench-operator-token",
            # Production defaults: the access log at INFO (to the server's log file).
            "STOREFRONT_DATABASE__CONNECT__SSL": "disable",
            "STOREFRONT_AUTH__TOKENS__KEYS": json.dumps([generate_signing_key("bench")]),
            **READ_POOLS.env(),
        }
        self.port = port
        self.pools: PoolConfig | None = None
        self.extra: dict[str, str] = {}
        self.server: Server | None = None
        self.api_key = ""

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def auth(self) -> dict[str, str]:
        return {API_KEY: self.api_key}

    def cli(self, *args: str, tolerate: str | None = None, stdin: str | None = None) -> str:
        """Runs `storefront ARGS`; a failure whose output contains `tolerate` is accepted."""
        proc = subprocess.run(
            [str(BIN / "storefront"), *args],
            env=self.env,
            cwd=ROOT,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=300,
        )
        if proc.returncode != 0:
            output = proc.stdout + proc.stderr
            if tolerate is None or tolerate not in output.lower():
                raise BenchError(f"`storefront {' '.join(args)}` failed:\n{output.strip()}")
        return proc.stdout

    def prepare(self) -> None:
        self.cli("migrate")
        self.cli("tenants", "create", "--slug", "bench", "--name", "Bench", tolerate="exists")
        # Rate limiting stays on (counted on every request, as in production) with a quota the
        # load never reaches, so the rows measure the limiter's cost, not its refusals. No
        # per-second burst cap: a plan with one counts a second quota (docs/performance.md).
        # The one bench tenant may hold the whole pool (the reference's budget of 20), as the
        # only tenant of a process would be allowed to: the plan's fairness cap (10 per process
        # on the default plan) would otherwise halve Storefront's connections.
        self.cli(
            *("tenants", "override", "bench"),
            *("requests_per_window=1000000000", "window_seconds=60", "burst=0"),
            f"db_concurrency_primary={REFERENCE_POOL_SIZE}",
            f"db_concurrency_replica={REFERENCE_POOL_SIZE}",
        )
        out = self.cli(
            *("api-keys", "create", "--tenant", "bench", "--scopes"),
            "catalog:read,catalog:write,orders:read,orders:write",
        )
        lines = [line.strip() for line in out.splitlines() if line.strip()]
        if not lines:
            raise BenchError("`storefront api-keys create` printed no secret")
        self.api_key = lines[-1]
        self.cli(
            *("users", "create", "--tenant", "bench", "--email", BENCH_USER, "--role", "viewer"),
            stdin=BENCH_PASSWORD + "\n",
            tolerate="email_taken",
        )

    def access_token(self) -> str:
        """A bearer token of the bench user (the key is fixed: it survives server restarts)."""
        status, body = http(
            "POST",
            self.base_url + "/v1/auth/token",
            form={"username": BENCH_USER, "password": BENCH_PASSWORD},
        )
        if status != 200:
            raise BenchError(f"POST /v1/auth/token -> {status}: {body[:300]!r}")
        token: str = json.loads(body)["access_token"]
        return token

    def serve(self, pools: PoolConfig, extra: Mapping[str, str] | None = None) -> None:
        """(Re)starts the server when the pool settings or the extra settings differ from the
        running one's."""
        wanted = dict(extra or {})
        if self.server is not None and self.pools == pools and self.extra == wanted:
            return
        self.stop()
        argv = [str(BIN / "storefront"), "serve", "--host", HOST, "--port", str(self.port)]
        env = {**self.env, **pools.env(), **wanted}
        self.server = Server("storefront", argv, env, self.port)
        self.pools, self.extra = pools, wanted
        self.server.start("/health/ready", 200)

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
        self.server, self.pools, self.extra = None, None, {}

    def seed(self, count: int, stock: int = 100, prefix: str = "bench") -> list[str]:
        """Creates `<prefix>-1`..`<prefix>-N`; returns the ids it created, the first's first."""
        ids: list[str] = []
        for n in range(1, count + 1):
            sku = f"{prefix}-{n}"
            for attempt in (sku, f"{sku}-{secrets.token_hex(4)}"):
                status, body = http(
                    "POST",
                    self.base_url + "/v1/products",
                    headers=self.auth,
                    body={
                        "sku": attempt,
                        "name": "Bench product",
                        "price": {"amount": 1299, "currency": "EUR"},
                        "stock": stock,
                    },
                )
                if status == 201:
                    ids.append(str(json.loads(body)["id"]))
                    break
                # A cluster directory left by an earlier run already has the sku: the first
                # product gets a fresh one (its id is needed), the rest are just data.
                if status == 409 and (n == 1 and attempt == sku):
                    continue
                if status == 409:
                    break
                raise BenchError(f"POST /v1/products ({attempt}) -> {status}: {body[:300]!r}")
        return ids


# --------------------------------------------------------------------------------------------
# orchestration


@contextmanager
def terminate_on_sigterm() -> Iterator[None]:
    """SIGTERM/SIGHUP become SystemExit, so the finally blocks still tear everything down."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


T = TypeVar("T")


def guarded(label: str, work: Callable[[], T]) -> tuple[T | None, int]:
    """`work()` with SIGTERM/SIGHUP turned into SystemExit (so its finally blocks tear down); a
    setup failure or Ctrl-C becomes a message and an exit code: (result, 0) or (None, code)."""
    try:
        with terminate_on_sigterm():
            return work(), 0
    except (BenchError, ClusterError) as error:
        print(f"\n{label} failed: {error}", file=sys.stderr)
        return None, 1
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return None, 130


def variant_env(target: str, redis_url: str) -> dict[str, str]:
    """The settings a target's Storefront runs with beyond the defaults."""
    return {
        key: redis_url if value == "<redis>" else value
        for key, value in VARIANTS.get(target, {}).items()
    }


def start_redis(port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A Redis of the bench's own on `port` (default: a free one; the machine's redis-server),
    no persistence."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BenchError("redis-server not found (apt-get install redis-server)")
    port = port or free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((HOST, port), timeout=0.2) as conn:
                conn.sendall(b"PING\r\n")
                if conn.recv(16).startswith(b"+PONG"):
                    return process, f"redis://{HOST}:{port}/0"
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise BenchError(f"redis-server did not start on port {port}")
        time.sleep(0.1)


def check_target(target: Target) -> None:
    """One request before loading: a 401 or 404 at 10k req/s would look like a great result."""
    status, body = http("GET", target.url, headers=dict(target.headers))
    if status != 200:
        raise BenchError(f"{target.name}: GET {target.url} -> {status}: {body[:300]!r}")


def print_row(row: Row) -> None:
    r = row.result
    print(
        f"  {row.scenario:<11} {row.target:<16} c={row.clients:<5} {r.requests_per_sec:>9.1f} req/s"
        f"  p50 {r.p50_ms:>8.2f} ms  p99 {r.p99_ms:>8.2f} ms  max {r.max_ms:>8.2f} ms"
        f"  non-2xx {r.non_2xx}  socket c/r/w/t {r.socket_errors}",
        flush=True,
    )


def print_checkout_waits(storefront: Any, pools: PoolConfig) -> None:
    """Server-side view: the longest pool wait any request had (from /ops/db), against the
    bound the design promises (pool.timeout + 100 ms); client latency also counts queueing in
    the kernel and the event loop, which no pool setting bounds."""
    server = storefront.server
    status, body = http(
        "GET",
        f"{server.base_url}/ops/db",
        headers={"Authorization": "Bearer bench-operator-token"},
    )
    if status != 200:
        print(f"    /ops/db answered {status}", flush=True)
        return
    bound = pools.timeout + 0.1
    for engine in json.loads(body)["engines"]:
        wait = engine["max_checkout_wait_seconds"]
        verdict = "within" if wait <= bound else "OVER"
        print(
            f"    {engine['name']}: max pool wait {wait * 1000:.0f} ms ({verdict} timeout + 100 ms"
            f" = {bound * 1000:.0f} ms), pool timeouts {engine['pool_timeouts']}",
            flush=True,
        )


def report(rows: Sequence[Row], *, command: str, wrk_label: str, duration: int) -> str:
    lines = [
        "| scenario | target | clients | req/s | p50 ms | p99 ms | max ms | non-2xx |"
        " socket errors c/r/w/t |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        r = row.result
        lines.append(
            f"| {row.scenario} | {row.target} | {row.clients} | {r.requests_per_sec:.0f} |"
            f" {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.1f} | {r.non_2xx} |"
            f" {r.socket_errors} |"
        )
    lines.append("")
    by_key = {(row.scenario, row.target): row.result for row in rows}
    for scenario in dict.fromkeys(row.scenario for row in rows):
        for base_name, others in RATIOS.items():
            base = by_key.get((scenario, base_name))
            if base is None or base.requests_per_sec == 0:
                continue
            for other in others:
                if (result := by_key.get((scenario, other))) is not None:
                    ratio = result.requests_per_sec / base.requests_per_sec
                    lines.append(f"- {scenario}: {other}/{base_name} req/s = {ratio:.2f}")
        off = by_key.get((scenario, "storefront-nolimit"))
        for limited in ("storefront", "storefront-redis"):
            on = by_key.get((scenario, limited))
            if off and on and off.requests_per_sec and on.requests_per_sec:
                # Per request: the limited row's time per request minus the unlimited one's,
                # at the same concurrency (one worker: wall time per request = 1 / req/s).
                cost = 1e6 / on.requests_per_sec - 1e6 / off.requests_per_sec
                lines.append(
                    f"- {scenario}: rate limiting ({limited}) costs {cost:.0f} us of the"
                    " worker per request against storefront-nolimit"
                )
    for row in rows:
        if row.result.missing_retry_after is not None:
            counts = ", ".join(f"{s}: {n}" for s, n in sorted(row.result.statuses.items()))
            lines.append(
                f"- {row.scenario} ({row.target}): responses by status {{{counts}}};"
                f" 503 without Retry-After: {row.result.missing_retry_after};"
                f" max latency {row.result.max_ms:.0f} ms"
            )
    cpus = os.cpu_count() or 0
    lines += [
        "",
        f"{cpus} CPUs, {platform.system()} {platform.release()}, Python"
        f" {platform.python_version()}, {wrk_label} `-t2 --latency`, {WARMUP_SECONDS} s warm-up"
        f" then {duration} s per row, one uvicorn worker per app, all on {HOST}.",
        "",
        f"Command: `{command}`",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--scenario",
        action="extend",
        nargs="+",
        choices=[*SCENARIOS, WS_SCENARIO],
        metavar="NAME",
        help=f"scenarios to run, in this order: {', '.join(SCENARIOS)} (default: all), and"
        f" {WS_SCENARIO} (live order status to 500 WebSocket clients, bench/ws.py; only when"
        " named)",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured run")
    parser.add_argument(
        "--only-reference",
        action="store_true",
        help="skip Storefront: measure only the reference apps on a table created here",
    )
    args = parser.parse_args(argv)
    if args.duration < 1:
        parser.error("--duration must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([".venv/bin/python", "-m", "bench.run", *sys.argv[1:]])
    os.chdir(ROOT)  # the CLI and LocalCluster resolve config/, alembic/ and .local/ from here
    raise_fd_limit()
    names = set(args.scenario or SCENARIOS)
    if WS_SCENARIO in names:  # not wrk: its own cluster, processes and clients
        from bench.ws import run_ws

        result, code = guarded(WS_SCENARIO, lambda: run_ws(args.duration))
        if result is None:
            return code
        print("\n" + result)
        names.discard(WS_SCENARIO)
        if not names:
            return 0
    scenarios = [
        s for s in SCENARIOS.values() if s.name in names
    ]  # canonical order: fewer restarts
    if args.only_reference:
        skipped = [s.name for s in scenarios if set(s.targets) <= SCHEMA_TARGETS]
        if skipped:
            print(f"--only-reference: skipping Storefront-only scenarios {skipped}")
        scenarios = [s for s in scenarios if s.name not in skipped]
    if not scenarios:
        print("nothing to run")
        return 0
    wrk = ensure_wrk()
    rows, code = guarded(
        "bench",
        lambda: run(scenarios, wrk=wrk, duration=args.duration, only_ref=args.only_reference),
    )
    if rows is None:
        return code
    print("\n" + report(rows, command=command, wrk_label=wrk_version(wrk), duration=args.duration))
    return 0


def run(scenarios: Sequence[Scenario], *, wrk: str, duration: int, only_ref: bool) -> list[Row]:
    wanted = {t for s in scenarios for t in s.targets}
    if only_ref:
        wanted -= SCHEMA_TARGETS
    servers: list[Server] = []
    storefront: Storefront | None = None
    cluster: LocalCluster | None = None
    redis: subprocess.Popen[bytes] | None = None
    redis_url = ""
    rows: list[Row] = []
    try:
        if "storefront-redis" in wanted:
            redis, redis_url = start_redis()
        print("starting PostgreSQL primary + replica ...", flush=True)
        cluster = LocalCluster(REFERENCE_CLUSTER_DIR if only_ref else CLUSTER_DIR)
        cluster.up()
        replica_owner = cluster.dsn("replica", user="storefront")
        targets: dict[str, Target] = {}

        if wanted & STOREFRONT_TARGETS:
            storefront = Storefront(cluster, free_port())
            print("storefront: migrate, tenant, api key, serve, seed ...", flush=True)
            storefront.prepare()
            storefront.serve(READ_POOLS)
            ids = storefront.seed(SEED_PRODUCTS)
            auth = tuple(storefront.auth.items())
            targets["storefront"] = Target(
                "storefront", f"{storefront.base_url}/v1/products/{ids[0]}", auth
            )
            targets["storefront-list"] = Target(
                "storefront-list", f"{storefront.base_url}/v1/products?limit=20", auth
            )
            targets["storefront-orders"] = Target(
                "storefront-orders", f"{storefront.base_url}/v1/orders", auth
            )
            for variant in VARIANTS:
                targets[variant] = Target(
                    variant, f"{storefront.base_url}/v1/products/{ids[0]}", auth
                )
            targets["storefront-jwt"] = Target(
                "storefront-jwt",
                f"{storefront.base_url}/v1/products/{ids[0]}",
                (("Authorization", f"Bearer {storefront.access_token()}"),),
            )
            product_id = ids[0]
        else:
            cluster.psql("primary", REFERENCE_SCHEMA, user="storefront")
            product_id = REFERENCE_PRODUCT_ID
            ids = [product_id]
        wait_for_rows(replica_owner, ids)

        reference_env = {
            **os.environ,
            "BENCH_DSN": replica_owner,
            "BENCH_POOL_SIZE": str(REFERENCE_POOL_SIZE),
            "BENCH_SQLA_DSN": sqlalchemy_url(replica_owner),
        }
        if "reference-orders" in wanted:
            # The application role (row-level security applies) on the primary, bench tenant.
            reference_env["BENCH_PRIMARY_DSN"] = cluster.dsn("primary", user="storefront_app")
            reference_env["BENCH_TENANT_ID"] = tenant_id(
                cluster.dsn("primary", user="storefront"), "bench"
            )
        for name, module, path in (
            ("bare", "reference_bare", f"/products/{product_id}"),
            ("tutorial", "reference_tutorial", f"/products/{product_id}"),
            ("reference-orders", "reference_orders", "/orders"),
        ):
            if name not in wanted:
                continue
            port = free_port()
            server = Server(name, uvicorn_argv(f"bench.{module}:app", port), reference_env, port)
            servers.append(server)
            server.start(path, None)
            targets[name] = Target(name, server.base_url + path)

        for scenario in scenarios:
            print(f"\n{scenario.name}: {scenario.about}", flush=True)
            order_products: list[str] = []  # seeded once: every target orders the same rows
            if scenario.order_products and storefront is not None:
                order_products = storefront.seed(
                    scenario.order_products,
                    stock=100_000_000,
                    prefix=f"{scenario.name}-{secrets.token_hex(3)}",
                )
            for name in scenario.targets:
                if name not in wanted:
                    continue
                if storefront is not None and name in STOREFRONT_TARGETS:
                    storefront.serve(scenario.pools, variant_env(name, redis_url))
                target = targets[name]
                check_target(target)
                options: dict[str, Any] = {
                    "clients": scenario.clients,
                    "timeout": scenario.wrk_timeout,
                    "script": STATUS_SCRIPT if scenario.count_statuses else None,
                }
                if order_products:
                    options["script_args"] = order_products
                run_wrk(wrk, target, duration=WARMUP_SECONDS, **options)
                result = run_wrk(wrk, target, duration=duration, **options)
                rows.append(Row(scenario.name, name, scenario.clients, result))
                print_row(rows[-1])
                if storefront is not None and name in STOREFRONT_TARGETS:
                    print_checkout_waits(storefront, scenario.pools)
        return rows
    finally:
        if storefront is not None:
            storefront.stop()
        for server in reversed(servers):
            server.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(timeout=10)
        if cluster is not None:
            print("stopping PostgreSQL ...", flush=True)
            cluster.down()


if __name__ == "__main__":
    sys.exit(main())
