"""Fault drills: `.venv/bin/python -m bench.drills [--phase a b c d] [--duration 10]`.

Brings up its own PostgreSQL primary + replica (`.local/drills`), prepares Storefront through its
CLI and serves it with `storefront serve` on its default settings (pools, timeouts, breakers,
routing from config/base.yaml), then per phase runs 32 asyncio httpx readers (GET by id, flat
out) plus, where it says so, one writer (POST /v1/products), performs a fault, restores it, and
prints the responses by status, the longest request and the change in
`storefront_db_read_fallbacks_total`:

  a  the replica killed (`pg_ctl -m immediate`) under 32 readers
  b  the primary killed under 32 readers and a writer
  c  the replica's WAL replay paused past `max_replica_lag_seconds` (readers and a writer)
  d  Redis (the rate limiter's store) and RabbitMQ (the API's outbox relay) stopped, then started

Redis is the drill's own redis-server; RabbitMQ is the machine's, shared with other users, so
it is never stopped: the app reaches it through a TCP proxy in this process, and the drill
stops and starts the proxy (listener closed, every relayed connection reset), which is what
the app sees of a broker that died and came back. The suite's assertive versions of a-c are in
tests/integration/test_faults.py and tests/integration/test_routing.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shlex
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from app.devcluster import LocalCluster
from bench.run import (
    HOST,
    ROOT,
    BenchError,
    PoolConfig,
    Storefront,
    free_port,
    guarded,
    start_redis,
    wait_for_rows,
)

CLUSTER_DIR = ".local/drills"
READERS = 32
OPERATOR = {"Authorization": "Bearer bench-operator-token"}
RABBIT = (HOST, 5672)
# config/base.yaml's pools: the drill runs on the defaults, not on the bench's pools of 20.
DEFAULT_POOLS = PoolConfig(size=10, max_overflow=10, timeout=1.0)
PHASES = {
    "a": "replica killed (pg_ctl -m immediate) under 32 readers",
    "b": "primary killed (pg_ctl -m immediate) under 32 readers and a writer",
    "c": "replica WAL replay paused past max_replica_lag_seconds (readers and a writer)",
    "d": "Redis and RabbitMQ stopped, then started (readers and a writer)",
}


@dataclass
class Tally:
    statuses: Counter[int] = field(default_factory=Counter)
    longest: float = 0.0
    longest_before: float = 0.0  # of the requests that started before the fault
    slow: int = 0  # answered after more than 1 s

    def add(self, status: int, seconds: float, before: bool) -> None:
        self.statuses[status] += 1
        self.longest = max(self.longest, seconds)
        if before:
            self.longest_before = max(self.longest_before, seconds)
        self.slow += seconds > 1.0

    def line(self, what: str) -> str:
        counts = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        return (
            f"  {what:<7} {{{counts}}}  longest {self.longest * 1000:.0f} ms"
            f" (before the fault {self.longest_before * 1000:.0f} ms)  over 1 s: {self.slow}"
        )


class BrokerProxy:
    """127.0.0.1:<port> -> the machine's RabbitMQ; `cut()` closes the listener and resets every
    relayed connection, `restore()` listens again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def restore(self) -> None:
        self._server = await asyncio.start_server(self._relay, HOST, self.port)

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*RABBIT)
        except OSError:
            writer.transport.abort()
            return
        self._writers |= {writer, up_writer}

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._writers -= {writer, up_writer}


def fallbacks(base_url: str) -> Counter[str]:
    """`storefront_db_read_fallbacks_total` by reason, from /metrics."""
    response = httpx.get(f"{base_url}/metrics", headers=OPERATOR, timeout=5)
    counts: Counter[str] = Counter()
    for line in response.text.splitlines():
        if line.startswith("storefront_db_read_fallbacks_total{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('reason="', 1)[1].split('"', 1)[0]] = int(float(value))
    return counts


async def load(
    base_url: str,
    auth: dict[str, str],
    product_id: str,
    *,
    duration: float,
    writer: bool,
    fault: Callable[[], Awaitable[None]],
    fault_at: float,
) -> tuple[Tally, Tally]:
    """32 readers (and a writer) for `duration` s; `fault()` runs `fault_at` s in."""
    reads, writes = Tally(), Tally()
    stop = asyncio.Event()
    faulted = asyncio.Event()
    run = secrets.token_hex(3)
    limits = httpx.Limits(max_connections=READERS + 4)
    async with httpx.AsyncClient(base_url=base_url, headers=auth, timeout=30, limits=limits) as c:

        async def request(tally: Tally, send: Callable[[], Awaitable[httpx.Response]]) -> None:
            started, before = time.monotonic(), not faulted.is_set()
            try:
                status = (await send()).status_code
            except httpx.HTTPError:
                status = 0  # no answer (connection error or 30 s timeout)
            tally.add(status, time.monotonic() - started, before)

        async def reader() -> None:
            while not stop.is_set():
                await request(reads, lambda: c.get(f"/v1/products/{product_id}"))

        written = 0

        def create() -> Awaitable[httpx.Response]:
            body = {
                "sku": f"drill-{run}-{written}",
                "name": "Drill",
                "price": {"amount": 100, "currency": "EUR"},
                "stock": 1,
            }
            return c.post("/v1/products", json=body)

        async def write_loop() -> None:
            nonlocal written
            while not stop.is_set():
                written += 1
                await request(writes, create)

        tasks = [asyncio.create_task(reader()) for _ in range(READERS)]
        if writer:
            tasks.append(asyncio.create_task(write_loop()))
        try:
            await asyncio.sleep(fault_at)
            faulted.set()
            await fault()
            await asyncio.sleep(max(0.0, duration - fault_at))
        finally:
            stop.set()
            await asyncio.gather(*tasks)
    return reads, writes


async def streaming_again(cluster: LocalCluster, within: float = 60) -> None:
    """Until a fresh write on the primary has been replayed by the replica."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError, asyncpg.PostgresError):
            primary = await asyncpg.connect(cluster.dsn("primary"), timeout=2)
            try:
                await primary.execute("SELECT txid_current()")
                lsn = await primary.fetchval("SELECT pg_current_wal_lsn()::text")
            finally:
                await primary.close()
            replica = await asyncpg.connect(cluster.dsn("replica"), timeout=2)
            try:
                if await replica.fetchval(
                    "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", lsn
                ):
                    return
            finally:
                await replica.close()
        await asyncio.sleep(0.2)
    raise BenchError("the replica did not stream again")


async def replica_sql(cluster: LocalCluster, sql: str) -> None:
    conn = await asyncpg.connect(cluster.dsn("replica", user="postgres"), timeout=5)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def drill(phase: str, cluster: LocalCluster, storefront: Storefront, **kw: Any) -> str:
    """One phase: load, fault, restore; returns the report lines."""
    duration: float = kw["duration"]
    product_id: str = kw["product_id"]
    fault_at = min(2.0, duration / 3)
    redis: list[Any] = kw["redis"]
    proxy: BrokerProxy = kw["proxy"]

    async def fault() -> None:
        if phase == "a":
            await asyncio.to_thread(cluster.stop, "replica", "immediate")
        elif phase == "b":
            await asyncio.to_thread(cluster.stop, "primary", "immediate")
        elif phase == "c":
            await replica_sql(cluster, "SELECT pg_wal_replay_pause()")
        else:
            redis[0].kill()
            redis[0].wait(timeout=10)
            await proxy.cut()
            asyncio.get_running_loop().call_later(duration / 3, restart_d)

    restoring: list[asyncio.Future[None]] = []

    def restart_d() -> None:
        redis[0] = start_redis(kw["redis_port"])[0]
        restoring.append(asyncio.ensure_future(proxy.restore()))

    before = fallbacks(storefront.base_url)
    reads, writes = await load(
        storefront.base_url,
        storefront.auth,
        product_id,
        duration=duration,
        writer=phase != "a",
        fault=fault,
        fault_at=fault_at,
    )
    delta = fallbacks(storefront.base_url) - before
    await asyncio.gather(*restoring)
    # Restore, and wait until the app serves as before.
    if phase in ("a", "b"):
        await asyncio.to_thread(cluster.start, "replica" if phase == "a" else "primary")
        await streaming_again(cluster)
    elif phase == "c":
        await replica_sql(cluster, "SELECT pg_wal_replay_resume()")
        await streaming_again(cluster)
    lines = [
        f"phase {phase}: {PHASES[phase]}; {duration:.0f} s, fault at {fault_at:.0f} s"
        + (f", restarted at {fault_at + duration / 3:.1f} s" if phase == "d" else ""),
        reads.line("reads"),
    ]
    if phase != "a":
        lines.append(writes.line("writes"))
    shown = ", ".join(f"{k}: +{v}" for k, v in sorted(delta.items())) or "none"
    lines.append(f"  read fallbacks {shown}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.drills", description=__doc__)
    parser.add_argument("--phase", nargs="+", choices=list(PHASES), default=list(PHASES))
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per phase")
    args = parser.parse_args(argv)
    if args.duration < 3:
        parser.error("--duration must be at least 3")
    return args


async def run(phases: Sequence[str], duration: float) -> list[str]:
    os.chdir(ROOT)
    cluster = LocalCluster(CLUSTER_DIR)
    storefront: Storefront | None = None
    redis_port = free_port()
    redis = [start_redis(redis_port)[0]]
    proxy = BrokerProxy()
    await proxy.restore()
    reports: list[str] = []
    try:
        print("starting PostgreSQL primary + replica ...", flush=True)
        await asyncio.to_thread(cluster.up)
        storefront = Storefront(cluster, free_port())
        storefront.env.update(
            {
                "STOREFRONT_REDIS__URL": f"redis://{HOST}:{redis_port}/0",
                "STOREFRONT_BROKER__URL": f"amqp://guest:guest@{HOST}:{proxy.port}/",
                "STOREFRONT_BROKER__EXCHANGE": f"drills.events.{secrets.token_hex(3)}",
                "STOREFRONT_OUTBOX__RELAY_IN_API": "true",
            }
        )
        print("storefront: migrate, tenant, api key, serve, seed ...", flush=True)
        await asyncio.to_thread(storefront.prepare)
        await asyncio.to_thread(storefront.serve, DEFAULT_POOLS)
        ids = await asyncio.to_thread(storefront.seed, 1)
        await asyncio.to_thread(wait_for_rows, cluster.dsn("replica", user="storefront"), ids)
        for phase in phases:
            print(f"\nphase {phase}: {PHASES[phase]} ...", flush=True)
            report = await drill(
                phase,
                cluster,
                storefront,
                duration=duration,
                product_id=ids[0],
                redis=redis,
                redis_port=redis_port,
                proxy=proxy,
            )
            print(report, flush=True)
            reports.append(report)
        return reports
    finally:
        if storefront is not None:
            storefront.stop()
        await proxy.cut()
        redis[0].terminate()
        redis[0].wait(timeout=10)
        print("stopping PostgreSQL ...", flush=True)
        await asyncio.to_thread(cluster.down)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    reports, code = guarded("drill", lambda: asyncio.run(run(args.phase, args.duration)))
    if reports is None:
        return code
    print("\n" + "\n".join(reports))
    print(f"\nCommand: `{shlex.join(['.venv/bin/python', '-m', 'bench.drills', *sys.argv[1:]])}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
