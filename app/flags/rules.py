"""The flag rule, the bucketing and the `Flags` protocol: pure, no I/O, no SDK.

Rule, for flag `key` and tenant `t`:
1. the flag is unknown or disabled -> off (disabled is the kill switch: it beats overrides);
2. `t` has an override for `key` -> the override;
3. otherwise on iff `bucket(key, t) < rollout_buckets` (0..10,000; 2,500 is 25%).

`bucket(key, t) = murmur3_x86_32(f"{key}:{t}", seed=0, unsigned) % 10_000`, the tenant id in its
canonical lowercase hyphenated form. A tenant's bucket never changes, so raising a rollout only
adds tenants (every bucket below 2,500 is also below 5,000) and every process agrees.
tests/unit/test_flag_rules.py pins golden vectors: a change of hash or format fails there.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import mmh3

BUCKETS = 10_000


def bucket(flag_key: str, tenant_id: uuid.UUID | str) -> int:
    """The tenant's bucket for this flag, 0..9,999 (stable across processes and releases)."""
    return int(mmh3.hash(f"{flag_key}:{tenant_id}", seed=0, signed=False)) % BUCKETS


def percent_to_buckets(percent: float) -> int:
    """25 -> 2,500; 12.34 -> 1,234 (a hundredth of a percent is one bucket)."""
    if not 0 <= percent <= 100:
        raise ValueError("a rollout is a percentage from 0 to 100")
    return round(percent * BUCKETS / 100)


@dataclass(frozen=True, slots=True)
class FlagRule:
    key: str
    enabled: bool
    rollout_buckets: int
    description: str = ""
    # tenant id (str) -> forced value
    overrides: Mapping[str, bool] = field(default_factory=dict)

    def evaluate(self, tenant_id: str) -> tuple[bool, str]:
        """(value, reason): reason is "disabled", "override" or "rollout"."""
        if not self.enabled:
            return False, "disabled"
        forced = self.overrides.get(tenant_id)
        if forced is not None:
            return forced, "override"
        return bucket(self.key, tenant_id) < self.rollout_buckets, "rollout"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every flag as read at one moment; replaced whole, never mutated."""

    rules: Mapping[str, FlagRule] = field(default_factory=dict)


class Flags(Protocol):
    """What routes and services ask. Answers come from memory (no I/O per call); an unknown
    flag is off."""

    async def enabled(self, flag_key: str, tenant_id: uuid.UUID) -> bool: ...

    async def evaluate_all(self, tenant_id: uuid.UUID) -> dict[str, bool]: ...


class NoFlags:
    """Every flag off: for code built without a flag source (unit tests, one-shot scripts)."""

    async def enabled(self, flag_key: str, tenant_id: uuid.UUID) -> bool:
        return False

    async def evaluate_all(self, tenant_id: uuid.UUID) -> dict[str, bool]:
        return {}
