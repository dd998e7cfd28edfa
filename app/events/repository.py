"""The transactional outbox and the consumers' inbox."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from app.db.repository import TenantScoped
from app.events.types import current_version


@dataclass(frozen=True, slots=True)
class Event:
    id: uuid.UUID
    tenant_id: uuid.UUID
    topic: str
    payload: dict[str, Any]
    created_at: datetime
    version: int = 1  # of the payload's shape (app/events/types.py); consumers upcast


@dataclass(frozen=True, slots=True)
class DeadLetter:
    id: uuid.UUID
    tenant_id: uuid.UUID
    topic: str
    attempts: int
    dead_lettered_at: datetime
    last_error: str | None


@dataclass(frozen=True, slots=True)
class PendingEvent:
    seq: int
    attempts: int
    event: Event


@dataclass(frozen=True, slots=True)
class Backlog:
    count: int  # unpublished, not dead-lettered events, up to the cap asked for
    oldest_age_seconds: float  # of the oldest of them, by the database's clock; 0 when none


EVENT_COLUMNS = "id, tenant_id, topic, payload, created_at, version"  # Event's fields, in order


class OutboxRepository(TenantScoped):
    async def add(self, topic: str, payload: dict[str, Any], at: datetime) -> uuid.UUID:
        """In the transaction of the change the event describes (a trigger NOTIFYs at commit);
        `payload` is of the topic's current version."""
        event_id = uuid.uuid4()
        await self._conn.execute(
            "INSERT INTO outbox (id, tenant_id, topic, version, payload, created_at,"
            " next_attempt_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6, $6)",
            event_id,
            self._tenant_id,
            topic,
            current_version(topic),
            json.dumps(payload),
            at,
        )
        return event_id

    # The relay's side: every tenant's events (the outbox has no row-level security).

    async def claim(self, limit: int, now: datetime) -> list[PendingEvent]:
        """Due, unpublished, not dead-lettered events in order, locked; concurrent relays skip
        each other's."""
        rows = await self._conn.fetch(
            f"SELECT seq, attempts, {EVENT_COLUMNS} FROM outbox"
            " WHERE published_at IS NULL AND dead_lettered_at IS NULL AND next_attempt_at <= $2"
            " ORDER BY seq LIMIT $1 FOR UPDATE SKIP LOCKED",
            limit,
            now,
        )
        return [PendingEvent(r[0], r[1], Event(*r[2:])) for r in rows]

    async def dead_letter(self, seq: int, at: datetime, error: str) -> None:
        """Set the event aside: no longer claimed until an operator retries it."""
        await self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, dead_lettered_at = $2, last_error = $3"
            " WHERE seq = $1",
            seq,
            at,
            error[:2000],
        )

    async def dead_letters(self, limit: int) -> list[DeadLetter]:
        rows = await self._conn.fetch(
            "SELECT id, tenant_id, topic, attempts, dead_lettered_at, last_error FROM outbox"
            " WHERE dead_lettered_at IS NOT NULL ORDER BY seq LIMIT $1",
            limit,
        )
        return [DeadLetter(*row) for row in rows]

    async def revive(self, event_ids: list[uuid.UUID] | None, now: datetime) -> int:
        """Dead-lettered events (these ids, or all with None) are due again, attempts reset."""
        status: str = await self._conn.execute(
            "UPDATE outbox SET dead_lettered_at = NULL, attempts = 0, next_attempt_at = $2"
            " WHERE dead_lettered_at IS NOT NULL AND ($1::uuid[] IS NULL OR id = ANY($1::uuid[]))",
            event_ids,
            now,
        )
        return int(status.split()[-1])

    async def mark_published(self, seqs: list[int], at: datetime) -> None:
        await self._conn.execute(
            "UPDATE outbox SET published_at = $2 WHERE seq = ANY($1::bigint[])", seqs, at
        )

    async def postpone(self, seqs: list[int], until: datetime, error: str | None = None) -> None:
        await self._conn.execute(
            "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = $2,"
            " last_error = coalesce($3, last_error) WHERE seq = ANY($1::bigint[])",
            seqs,
            until,
            error[:2000] if error is not None else None,
        )

    async def backlog(self, cap: int) -> Backlog:
        """Two index scans of `ix_outbox_unpublished` (rows with `published_at IS NULL`), the
        count stopping at `cap` rows: cheap enough for every scrape, however large the backlog."""
        row = await self._conn.fetchrow(
            "SELECT (SELECT count(*) FROM (SELECT 1 FROM outbox WHERE published_at IS NULL"
            " AND dead_lettered_at IS NULL ORDER BY seq LIMIT $1) AS pending),"
            " (SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox"
            " WHERE published_at IS NULL AND dead_lettered_at IS NULL ORDER BY seq LIMIT 1)",
            cap,
        )
        assert row is not None
        return Backlog(row[0], max(0.0, row[1] or 0.0))

    # The retained log, read by a replay (app/events/replay.py): this tenant's events.

    async def log(self, topics: list[str], after: int, limit: int) -> list[tuple[int, Event]]:
        """Events of `topics` after position `after`, in order (keyset on `ix_outbox_tenant`)."""
        rows = await self._conn.fetch(
            f"SELECT seq, {EVENT_COLUMNS} FROM outbox WHERE tenant_id = $1"
            " AND topic = ANY($2::text[]) AND seq > $3 ORDER BY seq LIMIT $4",
            self._tenant_id,
            topics,
            after,
            limit,
        )
        return [(r[0], Event(*r[1:])) for r in rows]

    async def not_applied(
        self, topics: list[str], consumer: str, skipped: list[uuid.UUID], limit: int
    ) -> list[tuple[int, Event]]:
        """Events of `topics` that `consumer` has not applied (its inbox), minus `skipped`, in
        order: a position alone would miss an event whose transaction committed after later
        ones did."""
        rows = await self._conn.fetch(
            f"SELECT seq, {EVENT_COLUMNS} FROM outbox o WHERE tenant_id = $1"
            " AND topic = ANY($2::text[]) AND id <> ALL($4::uuid[]) AND NOT EXISTS"
            " (SELECT 1 FROM inbox i WHERE i.consumer = $3 AND i.event_id = o.id)"
            " ORDER BY seq LIMIT $5",
            self._tenant_id,
            topics,
            consumer,
            skipped,
            limit,
        )
        return [(r[0], Event(*r[1:])) for r in rows]

    async def purge(self, before: datetime) -> int:
        status: str = await self._conn.execute("DELETE FROM outbox WHERE published_at < $1", before)
        return int(status.split()[-1])


class InboxRepository(TenantScoped):
    async def first_time(self, consumer: str, event_id: uuid.UUID) -> bool:
        """Record that `consumer` applies `event_id`; False if it already did (a redelivery).
        Called in the transaction of the effect, so both commit or neither."""
        row = await self._conn.fetchrow(
            "INSERT INTO inbox (consumer, event_id, tenant_id) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING RETURNING event_id",
            consumer,
            event_id,
            self._tenant_id,
        )
        return row is not None

    async def hold(
        self, consumer: str, *, exclusive: bool = False, timeout_ms: int | None = None
    ) -> None:
        """The transaction's lock on `consumer`'s inbox for this tenant: shared while a consumer
        applies an event (first thing in its transaction), exclusive while a replay swaps its
        rebuild in (app/events/replay.py). Taken before any inbox row, so the two cannot
        deadlock; an advisory lock, so no row has to exist and PgBouncer is fine."""
        kind = "" if exclusive else "_shared"
        if timeout_ms is not None:  # for this transaction: LockNotAvailableError past it
            await self._conn.execute(f"SET LOCAL lock_timeout = {int(timeout_ms)}")
        await self._conn.execute(
            f"SELECT pg_advisory_xact_lock{kind}(hashtextextended($1 || '/' || $2::uuid::text, 0))",
            consumer,
            self._tenant_id,
        )

    async def adopt(self, source: str, consumer: str) -> None:
        """`consumer` counts as having applied every event `source` applied (a replay's run
        handing its events to the live consumer); then `source` is forgotten."""
        await self._conn.execute(
            "INSERT INTO inbox (consumer, event_id, tenant_id)"
            " SELECT $2, event_id, tenant_id FROM inbox WHERE consumer = $1 AND tenant_id = $3"
            " ON CONFLICT DO NOTHING",
            source,
            consumer,
            self._tenant_id,
        )
        await self.forget(source)

    async def forget(self, consumer: str) -> None:
        await self._conn.execute(
            "DELETE FROM inbox WHERE consumer = $1 AND tenant_id = $2", consumer, self._tenant_id
        )

    async def missing_from_log(self, consumer: str) -> int:
        """Events `consumer` applied that the outbox no longer holds (purged): a rebuild from
        the log would lack them."""
        count: int = await self._conn.fetchval(
            "SELECT count(*) FROM inbox i WHERE i.consumer = $1 AND i.tenant_id = $2"
            " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = i.event_id)",
            consumer,
            self._tenant_id,
        )
        return count
