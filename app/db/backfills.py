"""Named backfills: the data half of an expand/contract change, run after the expand migration
and before the contract one, never inside a DDL transaction (`storefront migrate backfill NAME`).

A backfill walks its table in primary-key order, one batch per short transaction (keyset
pagination: each batch starts after the last key of the one before, so a batch costs the same
at the end of the table as at the start). The key reached is stored in `backfill_progress` in
the batch's own transaction, so a run that stops (Ctrl-C, a crash, `max_batches`) resumes where
the last committed batch ended. Every update is guarded by the backfill's `pending` predicate:
running it twice changes nothing the second time. Concurrent runs take turns: each batch locks
the progress row first, so they continue each other's walk instead of repeating it.

Rows the walk cannot see (inserted behind the cursor by processes of the previous release
while it ran) are caught by the sweep that ends every run: batches of `pending` rows in any
order, until one finds none. Only then is the backfill marked done.

Runs as the schema owner (`database.migration_url`), which bypasses row-level security (every
tenant's rows); a role that does not is refused, since it would see no rows and report done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import create_async_engine

from app.core.errors import Conflict, NotFound
from app.db.engines import asyncpg_url


@dataclass(frozen=True)
class Backfill:
    name: str
    description: str
    table: str
    key: tuple[tuple[str, str], ...]  # the primary key's (column, SQL type), in index order
    assignments: str  # the SET list; the table's alias is `t`
    pending: str  # rows that still need it (alias `t`)


BACKFILLS: dict[str, Backfill] = {
    b.name: b
    for b in (
        Backfill(
            name="order_line_amounts",
            description="order_lines.line_amount = quantity x unit_amount (expand 0012, before"
            " contract 0013)",
            table="order_lines",
            key=(("order_id", "uuid"), ("product_id", "uuid")),
            assignments="line_amount = t.quantity::bigint * t.unit_amount",
            pending="t.line_amount IS NULL",
        ),
    )
}


class UnknownBackfill(NotFound):
    code = "backfill.unknown"
    title = "No backfill of that name"


class BackfillRefused(Conflict):
    code = "backfill.refused"
    title = "The backfill cannot run here"


@dataclass(frozen=True)
class BatchDone:
    """One committed batch: `phase` is `walk` (key order) or `sweep` (leftovers)."""

    phase: str
    seen: int  # rows the batch looked at
    updated: int  # rows it changed (seen minus those already filled)
    total: int  # rows changed by every run of this backfill so far
    last_key: list[str] | None


@dataclass(frozen=True)
class BackfillResult:
    name: str
    batches: int
    updated: int  # by this run
    total: int
    done_at: datetime | None  # None: stopped early (max_batches), run again to finish


def lookup(name: str) -> Backfill:
    try:
        return BACKFILLS[name]
    except KeyError:
        known = ", ".join(sorted(BACKFILLS))
        raise UnknownBackfill(f"no backfill named {name!r} (known: {known})") from None


def _walk_sql(b: Backfill, after: bool) -> str:
    columns = ", ".join(c for c, _ in b.key)
    bounds = ", ".join(f"($2::text[])[{i}]::{kind}" for i, (_, kind) in enumerate(b.key, 1))
    where = f" WHERE ({columns}) > ({bounds})" if after else ""
    descending = ", ".join(f"{c} DESC" for c, _ in b.key)
    as_text = ", ".join(f"{c}::text" for c, _ in b.key)
    return (
        f"WITH batch AS (SELECT {columns} FROM {b.table}{where} ORDER BY {columns} LIMIT $1),"
        f" changed AS ({_update_sql(b)} RETURNING 1)"
        " SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM changed),"
        f" (SELECT ARRAY[{as_text}] FROM batch ORDER BY {descending} LIMIT 1)"
    )


def _sweep_sql(b: Backfill) -> str:
    columns = ", ".join(c for c, _ in b.key)
    return (
        f"WITH batch AS (SELECT {columns} FROM {b.table} t WHERE {b.pending} LIMIT $1"
        f" FOR UPDATE), changed AS ({_update_sql(b)} RETURNING 1)"
        " SELECT (SELECT count(*) FROM batch), (SELECT count(*) FROM changed)"
    )


def _update_sql(b: Backfill) -> str:
    match = " AND ".join(f"t.{c} = batch.{c}" for c, _ in b.key)
    return f"UPDATE {b.table} t SET {b.assignments} FROM batch WHERE {match} AND {b.pending}"


class BackfillRunner:
    """Runs one backfill on one connection (asyncpg) of the schema owner."""

    def __init__(
        self,
        conn: Any,
        backfill: Backfill,
        batch_size: int = 1000,
        pause_seconds: float = 0.0,
        lock_timeout: str = "3s",
        statement_timeout: str = "60s",
    ) -> None:
        self._conn = conn
        self._b = backfill
        self._batch_size = batch_size
        self._pause = pause_seconds
        self._timeouts = (
            f"SET LOCAL lock_timeout = '{lock_timeout}';"
            f" SET LOCAL statement_timeout = '{statement_timeout}'"
        )

    async def check(self) -> None:
        """Refuse before any batch: no progress table (not migrated), a role under RLS."""
        if await self._conn.fetchval("SELECT to_regclass('backfill_progress')") is None:
            raise BackfillRefused(
                "the database has no backfill_progress table: run `storefront migrate` first"
            )
        bypasses = await self._conn.fetchval(
            "SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
        if not bypasses:
            raise BackfillRefused(
                "the backfill's role is subject to row-level security and would see no rows:"
                " run it as the schema owner (database.migration_url, BYPASSRLS or superuser)"
            )

    async def run(
        self,
        max_batches: int | None = None,
        on_batch: Callable[[BatchDone], None] = lambda _: None,
    ) -> BackfillResult:
        await self.check()
        await self._conn.execute(
            "INSERT INTO backfill_progress (name) VALUES ($1) ON CONFLICT DO NOTHING", self._b.name
        )
        batches = updated = 0
        walking = True
        while max_batches is None or batches < max_batches:
            done = await self._batch(walking)
            batches += 1
            updated += done.updated
            on_batch(done)
            if done.seen == 0:
                if not walking:
                    return await self._finish(batches, updated)
                walking = False  # the walk reached the end: sweep what it could not see
            elif self._pause:
                await asyncio.sleep(self._pause)
        total = await self._conn.fetchval(
            "SELECT rows_updated FROM backfill_progress WHERE name = $1", self._b.name
        )
        return BackfillResult(self._b.name, batches, updated, total, None)

    async def _batch(self, walking: bool) -> BatchDone:
        name = self._b.name
        async with self._conn.transaction():
            await self._conn.execute(self._timeouts)
            # The lock makes concurrent runs take turns, each continuing from the other's key.
            last_key = await self._conn.fetchval(
                "SELECT last_key FROM backfill_progress WHERE name = $1 FOR UPDATE", name
            )
            if walking:
                sql = _walk_sql(self._b, after=last_key is not None)
                args = (self._batch_size, last_key) if last_key is not None else (self._batch_size,)
                seen, changed, reached = await self._conn.fetchrow(sql, *args)
                last_key = reached or last_key
            else:
                seen, changed = await self._conn.fetchrow(_sweep_sql(self._b), self._batch_size)
            total = await self._conn.fetchval(
                "UPDATE backfill_progress SET last_key = $2, rows_updated = rows_updated + $3,"
                " updated_at = now() WHERE name = $1 RETURNING rows_updated",
                name,
                last_key,
                changed,
            )
        return BatchDone("walk" if walking else "sweep", seen, changed, total, last_key)

    async def _finish(self, batches: int, updated: int) -> BackfillResult:
        row = await self._conn.fetchrow(
            "UPDATE backfill_progress SET done_at = now(), updated_at = now() WHERE name = $1"
            " RETURNING rows_updated, done_at",
            self._b.name,
        )
        return BackfillResult(self._b.name, batches, updated, row[0], row[1])


async def run_backfill(
    owner_url: str,
    name: str,
    *,
    connect_timeout: float,
    batch_size: int = 1000,
    max_batches: int | None = None,
    pause_seconds: float = 0.0,
    on_batch: Callable[[BatchDone], None] = lambda _: None,
) -> BackfillResult:
    """Run the backfill `name` on its own connection to `owner_url` (as migrations do)."""
    backfill = lookup(name)
    engine = create_async_engine(asyncpg_url(owner_url), connect_args={"timeout": connect_timeout})
    try:
        fairy = await engine.raw_connection()
        try:
            runner = BackfillRunner(fairy.driver_connection, backfill, batch_size, pause_seconds)
            return await runner.run(max_batches, on_batch)
        finally:
            fairy.close()
    finally:
        await engine.dispose()
