"""The credential cache's bounds and tombstones (no I/O)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from app.core.clock import FixedClock
from app.identity.cache import CredentialCache, TtlMap
from app.identity.permissions import Role
from app.identity.tokens import AccessClaims


class Ticks:
    """A monotonic time source moved by hand."""

    def __init__(self) -> None:
        self.at = 0.0

    def __call__(self) -> float:
        return self.at


def test_a_full_map_evicts_its_oldest_entry_only() -> None:
    entries: TtlMap[int, str] = TtlMap(60, max_entries=3)
    for key in range(3):
        entries.put(key, f"v{key}")
    entries.put(3, "v3")
    assert len(entries) == 3
    assert entries.get(0) is None  # the oldest went
    assert [entries.get(k) for k in (1, 2, 3)] == ["v1", "v2", "v3"]
    entries.put(1, "again")  # a re-put is new: 2 is now the oldest
    entries.put(4, "v4")
    assert entries.get(2) is None
    assert [entries.get(k) for k in (1, 3, 4)] == ["again", "v3", "v4"]


def test_garbage_never_flushes_the_map_wholesale() -> None:
    entries: TtlMap[str, int] = TtlMap(60, max_entries=10_000)
    for i in range(10_000):
        entries.put(f"keep-{i}", i)
    for i in range(5_000):  # 5,000 junk entries push out exactly 5,000 old ones
        entries.put(f"junk-{i}", -1)
    assert len(entries) == 10_000
    assert entries.get("keep-4999") is None
    assert entries.get("keep-5000") == 5000
    assert entries.get("keep-9999") == 9999


def test_entries_expire_and_a_put_caps_its_ttl() -> None:
    ticks = Ticks()
    entries: TtlMap[str, int] = TtlMap(30, now=ticks)
    entries.put("a", 1)
    entries.put("b", 2, ttl=5)
    entries.put("c", 3, ttl=500)  # capped at the map's 30 s
    ticks.at = 10
    assert (entries.get("a"), entries.get("b"), entries.get("c")) == (1, None, 3)
    ticks.at = 31
    assert entries.get("a") is None
    assert entries.get("c") is None
    assert len(entries) == 0  # expired entries are dropped when met


def _claims(user: uuid.UUID, family: uuid.UUID, tenant: uuid.UUID) -> AccessClaims:
    return AccessClaims(user, tenant, Role.admin, family, expires_at=2e9)


def test_tombstones_follow_the_container_clock_and_outlive_the_token() -> None:
    clock = FixedClock(datetime(2026, 12, 2, tzinfo=UTC))
    cache = CredentialCache(30, 30, clock, tombstone_seconds=935)
    tenant, user, family = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.tokens.put("token", _claims(user, family, tenant))
    cache.user_roles.put((tenant, user), "admin")
    cache.revoke(family)
    assert cache.is_revoked(family)
    assert not cache.is_revoked(user)
    assert cache.tokens.get("token") is None  # dropped with its family
    clock.at += timedelta(seconds=700)  # past the old 600 s tombstones
    assert cache.is_revoked(family)
    clock.at += timedelta(seconds=236)
    assert not cache.is_revoked(family)


def test_tombstones_from_the_database_keep_their_expiry() -> None:
    clock = FixedClock(datetime(2026, 12, 2, tzinfo=UTC))
    cache = CredentialCache(30, 30, clock, tombstone_seconds=935)
    tenant, user = uuid.uuid4(), uuid.uuid4()
    cache.user_roles.put((tenant, user), "admin")
    cache.revoke_all([(user, clock.at + timedelta(seconds=100))])
    assert cache.is_revoked(user)
    assert cache.user_roles.get((tenant, user)) is None
    clock.at += timedelta(seconds=101)
    assert cache.sweep() == 1
    assert cache.tombstones == 0


def test_a_role_is_cached_per_tenant_and_user() -> None:
    cache = CredentialCache(30, 30, FixedClock(datetime.now(UTC)), tombstone_seconds=935)
    tenant, other, user = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cache.user_roles.put((tenant, user), "owner")
    assert cache.user_roles.get((other, user)) is None  # another tenant's token: no role
    cache.forget_user(user)
    assert cache.user_roles.get((tenant, user)) is None
    assert cache.changed_here(user)
