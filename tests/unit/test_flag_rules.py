"""Flag rules and bucketing: golden vectors, distribution, stability, precedence, the
OpenFeature adapter, and the same assignment in another process."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import mmh3
import pytest

from app.flags.provider import OpenFeatureFlags
from app.flags.rules import BUCKETS, FlagRule, Snapshot, bucket, percent_to_buckets
from app.flags.service import FlagStore

# bucket = murmur3_x86_32(f"{flag_key}:{tenant_id}", seed 0, unsigned) % 10_000, the tenant id
# lowercase and hyphenated. If one of these changes, every tenant's assignment moves: never
# change the formula without a migration plan (docs/decisions.md, issue 9).
GOLDEN = [
    ("catalog.search_prefix", "00000000-0000-0000-0000-000000000000", 2393775586, 5586),
    ("catalog.search_prefix", "6f1c2f9e-3b7a-4c1d-9e8f-0123456789ab", 1630941639, 1639),
    ("catalog.search_prefix", "ffffffff-ffff-ffff-ffff-ffffffffffff", 1120210566, 566),
    ("orders.fast_confirm", "00000000-0000-0000-0000-000000000000", 1127759072, 9072),
    ("orders.fast_confirm", "6f1c2f9e-3b7a-4c1d-9e8f-0123456789ab", 3846990454, 454),
    ("orders.fast_confirm", "ffffffff-ffff-ffff-ffff-ffffffffffff", 3264164129, 4129),
]


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """Reference MurmurHash3_x86_32 (Austin Appleby), to check mmh3 against."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed
    rounded = len(data) - len(data) % 4
    for i in range(0, rounded, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[rounded:]
    k = 0
    for i, byte in enumerate(tail):
        k |= byte << (8 * i)
    if tail:
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def tenant_ids(count: int, seed: int = 9) -> list[uuid.UUID]:
    rng = random.Random(seed)
    return [uuid.UUID(int=rng.getrandbits(128), version=4) for _ in range(count)]


@pytest.mark.parametrize(("key", "tenant", "hashed", "expected"), GOLDEN)
def test_golden_vectors(key: str, tenant: str, hashed: int, expected: int) -> None:
    text = f"{key}:{tenant}"
    assert murmur3_32(text.encode()) == hashed
    assert mmh3.hash(text, seed=0, signed=False) == hashed
    assert bucket(key, uuid.UUID(tenant)) == bucket(key, tenant) == expected == hashed % BUCKETS


def test_reference_murmur3_matches_published_values() -> None:
    assert murmur3_32(b"") == 0
    assert murmur3_32(b"hello") == 0x248BFA47
    assert murmur3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723
    assert mmh3.hash("flag:tenant", signed=False) == 2558843951


def test_a_quarter_of_ten_thousand_tenants_and_raising_keeps_them() -> None:
    ids = [str(t) for t in tenant_ids(10_000)]
    at25 = FlagRule("catalog.search_prefix", True, percent_to_buckets(25))
    at50 = FlagRule("catalog.search_prefix", True, percent_to_buckets(50))
    on25 = {t for t in ids if at25.evaluate(t)[0]}
    on50 = {t for t in ids if at50.evaluate(t)[0]}
    assert abs(len(on25) / len(ids) - 0.25) <= 0.015, len(on25)
    assert abs(len(on50) / len(ids) - 0.50) <= 0.015, len(on50)
    assert on25 <= on50  # every tenant that was on stays on
    # Another flag splits the same tenants differently (no tenant is first in line everywhere).
    other = FlagRule("orders.fast_confirm", True, 2500)
    assert on25 != {t for t in ids if other.evaluate(t)[0]}


def test_precedence_disabled_then_override_then_rollout() -> None:
    tenant = "6f1c2f9e-3b7a-4c1d-9e8f-0123456789ab"  # bucket 1639
    inside = FlagRule("catalog.search_prefix", True, 2000)
    assert inside.evaluate(tenant) == (True, "rollout")
    outside = FlagRule("catalog.search_prefix", True, 1000)
    assert outside.evaluate(tenant) == (False, "rollout")
    forced_on = FlagRule("catalog.search_prefix", True, 0, overrides={tenant: True})
    assert forced_on.evaluate(tenant) == (True, "override")
    forced_off = FlagRule("catalog.search_prefix", True, BUCKETS, overrides={tenant: False})
    assert forced_off.evaluate(tenant) == (False, "override")
    killed = FlagRule("catalog.search_prefix", False, BUCKETS, overrides={tenant: True})
    assert killed.evaluate(tenant) == (False, "disabled")


def test_percent_to_buckets() -> None:
    assert [percent_to_buckets(p) for p in (0, 0.01, 25, 33.33, 100)] == [0, 1, 2500, 3333, 10000]
    with pytest.raises(ValueError, match="0 to 100"):
        percent_to_buckets(100.5)


async def test_openfeature_adapter_answers_from_the_snapshot() -> None:
    store = FlagStore(uow_factory=None)  # type: ignore[arg-type]  # never reloads here
    flags, again = OpenFeatureFlags(store), OpenFeatureFlags(store)
    assert flags.domain != again.domain  # one SDK domain per container
    tenant = uuid.UUID("6f1c2f9e-3b7a-4c1d-9e8f-0123456789ab")
    assert await flags.enabled("catalog.search_prefix", tenant) is False  # nothing loaded: off
    store.snapshot = Snapshot(
        {
            "catalog.search_prefix": FlagRule("catalog.search_prefix", True, 2000),
            "orders.fast_confirm": FlagRule(
                "orders.fast_confirm", True, 0, overrides={str(tenant): True}
            ),
            "reports.beta": FlagRule("reports.beta", False, BUCKETS),
        }
    )
    assert await flags.enabled("catalog.search_prefix", tenant) is True
    assert await flags.enabled("no.such.flag", tenant) is False
    assert await flags.evaluate_all(tenant) == {
        "catalog.search_prefix": True,
        "orders.fast_confirm": True,
        "reports.beta": False,
    }


def test_another_process_assigns_the_same_buckets() -> None:
    ids = [str(t) for t in tenant_ids(500, seed=3)]
    program = (
        "import json, sys\n"
        "from app.flags.rules import bucket\n"
        "ids = json.load(sys.stdin)\n"
        "print(json.dumps([bucket('catalog.search_prefix', t) for t in ids]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
        env={"PYTHONHASHSEED": "12345", "PATH": ""},  # a different str-hash seed: no effect
        check=True,
    )
    assert json.loads(result.stdout) == [bucket("catalog.search_prefix", t) for t in ids]
