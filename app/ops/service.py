"""Operator views of the database layer: readiness and the /ops/db snapshot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from alembic.config import Config
from alembic.script import ScriptDirectory

from app.core.errors import DatabaseBusy, DatabaseUnavailable
from app.db.database import Database
from app.db.fairness import TenantGate
from app.db.nodes import DatabaseNode
from app.db.routing import format_lsn
from app.ops.repository import OpsRepository

ALEMBIC_INI = Path(__file__).resolve().parent.parent.parent / "alembic.ini"


# The oldest schema revision this code runs on (docs/operations.md, "Releasing with schema
# changes"): the expand step of the newest change whose contract step this code does not need.
# This release writes and reads order_lines.line_amount but also reads rows without it, so it
# serves on 0012 (expand) as on 0013 (contract). Move it up when code starts relying on a
# contract step (e.g. reading line_amount without coalesce needs 0013).
OLDEST_SCHEMA = "0012"


def _scripts() -> ScriptDirectory:
    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(ALEMBIC_INI.parent / "alembic"))
    return ScriptDirectory.from_config(config)


def migration_head() -> str | None:
    """The revision the code expects (read from the migration scripts once, at start-up)."""
    return _scripts().get_current_head()


@dataclass(frozen=True)
class SchemaCompatibility:
    """The schema revisions this code is ready on: `accepted` (OLDEST_SCHEMA up to the head:
    contract steps not applied yet) and any revision it has no script for, which can only be a
    later release's (the expand/contract rule: a release runs on the next one's expand; its
    contract runs once this release no longer does)."""

    accepted: frozenset[str]
    known: frozenset[str]

    def ready_on(self, revision: str | None) -> bool:
        if revision is None:
            return False
        return revision in self.accepted or revision not in self.known


def schema_compatibility() -> SchemaCompatibility:
    scripts = _scripts()
    head = scripts.get_current_head()
    accepted = {r.revision for r in scripts.iterate_revisions(head, OLDEST_SCHEMA, inclusive=True)}
    return SchemaCompatibility(
        frozenset(accepted), frozenset(r.revision for r in scripts.walk_revisions())
    )


@dataclass(frozen=True)
class Readiness:
    ready: bool
    detail: dict[str, Any]


@dataclass(frozen=True)
class CapacityLine:
    engine: str
    budget: int  # connections all processes may open to this server
    max_connections: int
    usable: int  # max_connections minus reservations
    in_use: int

    @property
    def fits(self) -> bool:
        return self.budget <= self.usable


class Gate(Protocol):
    """The door in front of request handling (app/http/middleware.py Door)."""

    limit: int
    inside: int
    waiting: int

    @property
    def saturated(self) -> bool: ...


class OpsService:
    def __init__(
        self,
        database: Database,
        expected_head: str | None,
        door: Gate,
        gate: TenantGate | None = None,
        compatible: SchemaCompatibility | None = None,
    ) -> None:
        self._db = database
        self._head = expected_head
        self._compatible = compatible  # None: the head only
        self._door = door
        self._gate = gate
        self._revision: str | None = None

    async def readiness(self) -> Readiness:
        """Ready when the primary answers, its schema is one this code runs on (its head, or
        within `compatible`: see SchemaCompatibility), and the door is not saturated (a process
        that turns requests away should get no new ones).

        A plain request-path query, not a breaker probe (an unauthenticated endpoint must not
        drive the half-open trial). All connections busy means the primary is answering: the
        last revision read stands.
        """
        primary: dict[str, Any] = {"reachable": False}
        try:
            async with self._db.primary.connection() as fairy:
                self._revision = await OpsRepository(fairy.driver_connection).schema_revision()
            primary["reachable"] = True
        except DatabaseBusy:
            primary["reachable"], primary["busy"] = True, True
        except DatabaseUnavailable as error:
            primary["error"] = error.detail
        except Exception as error:  # any failure to answer means "not ready", with the reason
            primary["error"] = type(error).__name__
        if primary["reachable"]:
            primary |= {"schema_revision": self._revision, "expected_schema": self._head}
        door = self._door
        saturated = door.saturated
        schema_ok = (
            self._compatible.ready_on(self._revision)
            if self._compatible is not None
            else self._revision == self._head
        )
        ready = bool(primary["reachable"]) and schema_ok and not saturated
        replicas = [
            {
                "name": n.name,
                "reachable": bool(n.health.reachable),
                "lag_seconds": n.health.lag_seconds,
            }
            for n in self._db.replicas
        ]
        return Readiness(
            ready,
            {
                "status": "ready" if ready else "not_ready",
                "primary": primary,
                "replicas": replicas,
                "door": {
                    "limit": door.limit,
                    "inside": door.inside,
                    "waiting": door.waiting,
                    "saturated": saturated,
                },
            },
        )

    async def capacity(self, processes: int, reserve: int) -> list[CapacityLine]:
        """Per server: does `processes x (size + max_overflow)` fit under max_connections minus
        the superuser reservation and `reserve` (replication, maintenance, other clients)?"""
        lines = []
        for node in self._db.nodes:
            async with node.connection() as fairy:
                server = await OpsRepository(fairy.driver_connection).capacity()
            usable = server.max_connections - server.reserved - reserve
            budget = processes * node.capacity
            lines.append(
                CapacityLine(node.name, budget, server.max_connections, usable, server.in_use)
            )
        return lines

    def database_status(self) -> dict[str, Any]:
        router = self._db.router
        return {
            "engines": [_node_status(node) for node in self._db.nodes],
            "routing": {
                "max_replica_lag_seconds": router.settings.max_replica_lag_seconds,
                "stale_reads_on_primary_outage": router.settings.stale_reads_on_primary_outage,
                "fallbacks": dict(router.fallbacks),
            },
            "tenants": self._tenant_connections(),
        }

    def _tenant_connections(self) -> dict[str, Any]:
        """Fairness: every tenant holding or waiting for connections now (most held first),
        and the tenant_busy refusals per role since start."""
        gate = self._gate
        if gate is None:
            return {"busy": [], "rejected": {}}
        busy = [
            {
                "tenant_id": str(u.tenant_id),
                "role": u.role,
                "in_use": u.in_use,
                "waiting": u.waiting,
                "limit": u.limit,
                "rejected": u.rejected,
            }
            for u in gate.busy()
        ]
        return {"busy": busy, "rejected": dict(gate.rejected)}


def _node_status(node: DatabaseNode) -> dict[str, Any]:
    health = node.health
    return {
        "name": node.name,
        "role": node.role,
        "weight": node.weight,
        "pool": node.pool_status(),
        "pool_timeouts": node.busy_rejections,
        "max_checkout_wait_seconds": round(node.max_checkout_seconds, 4),
        "breaker": {"state": node.breaker.state, "failures": node.breaker.fail_counter},
        "healthy": bool(health.reachable) and node.breaker.is_closed,
        "reachable": health.reachable,
        "lsn": format_lsn(health.lsn) if health.lsn is not None else None,
        "lag_bytes": health.lag_bytes,
        "lag_seconds": health.lag_seconds,
        "checked_at": health.checked_at,
        "error": health.error,
        "routed_reads": node.routed_reads,
    }
