"""Read routing: lag-aware weighted round robin over replicas, with a counted primary fallback."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from app.core.errors import DatabaseUnavailable
from app.db.nodes import DatabaseNode
from app.settings import RoutingSettings


@dataclass(frozen=True)
class ReadPreference:
    """What the request asked for: a consistency token (WAL position) and/or strong reads."""

    min_lsn: int | None = None
    strong: bool = False


def format_lsn(lsn: int) -> str:
    """PostgreSQL's own `X/Y` notation: opaque to clients, readable to operators."""
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")


def parse_lsn(token: str) -> int | None:
    """`X/Y` with 1-8 hex digits each (what format_lsn writes); None for anything else."""
    match = _LSN.fullmatch(token)
    if match is None:
        return None
    return (int(match[1], 16) << 32) | int(match[2], 16)


class ReplicaRouter:
    def __init__(
        self, primary: DatabaseNode, replicas: list[DatabaseNode], settings: RoutingSettings
    ) -> None:
        self.primary = primary
        self.replicas = replicas
        self.settings = settings
        self.fallbacks: Counter[str] = Counter()
        self._current = {node.name: 0 for node in replicas}

    def for_write(self) -> DatabaseNode:
        return self.primary

    def for_read(self, preference: ReadPreference) -> DatabaseNode:
        if preference.strong:
            return self._count(self.primary)
        eligible = [node for node in self.replicas if self._serves(node, preference.min_lsn)]
        if eligible:
            return self._count(self._pick(eligible))
        if self.replicas:
            self.fallbacks["no_eligible_replica"] += 1
        if self.primary.breaker.is_closed or not self.settings.stale_reads_on_primary_outage:
            return self._count(self.primary)
        # Primary down: a stale answer from a reachable replica beats a 503.
        stale = self._stale(self.replicas)
        if stale is None:
            raise DatabaseUnavailable("no database server can serve this read", retry_after=1)
        return stale

    def for_retry(self, failed: DatabaseNode, preference: ReadPreference) -> DatabaseNode | None:
        """Where a read goes once more after `failed` became unavailable under it (app/db/uow.py
        `read`): another replica that serves the preference, else the primary; after the
        primary failed, a reachable replica when `stale_reads_on_primary_outage` allows (the
        failure is one), never for a strong read. None: no other node can serve it."""
        others = [node for node in self.replicas if node is not failed]
        if failed is not self.primary:
            eligible = [node for node in others if self._serves(node, preference.min_lsn)]
            return self._count(self._pick(eligible) if eligible else self.primary)
        if preference.strong or not self.settings.stale_reads_on_primary_outage:
            return None
        return self._stale(others)

    def _stale(self, nodes: list[DatabaseNode]) -> DatabaseNode | None:
        """A reachable replica whatever its lag (counted), or None."""
        reachable = [n for n in nodes if n.breaker.is_closed and n.health.reachable]
        if not reachable:
            return None
        self.fallbacks["stale_replica_read"] += 1
        return self._count(self._pick(reachable))

    def _serves(self, node: DatabaseNode, min_lsn: int | None) -> bool:
        health = node.health
        if not (node.breaker.is_closed and health.reachable):
            return False
        if (health.lag_seconds or 0.0) > self.settings.max_replica_lag_seconds:
            return False
        return min_lsn is None or (health.lsn is not None and health.lsn >= min_lsn)

    def _pick(self, nodes: list[DatabaseNode]) -> DatabaseNode:
        """Smooth weighted round robin (as nginx does): even spread, exact shares."""
        total = 0
        best = nodes[0]
        for node in nodes:
            self._current[node.name] += node.weight
            total += node.weight
            if self._current[node.name] > self._current[best.name]:
                best = node
        self._current[best.name] -= total
        return best

    @staticmethod
    def _count(node: DatabaseNode) -> DatabaseNode:
        node.routed_reads += 1
        return node
