"""Pure logic of the database layer: breaker classification, routing, LSN tokens, ETags."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc

from app.core.errors import DatabaseUnavailable, PreconditionFailed, PreconditionRequired
from app.db.breakers import DatabaseBreaker
from app.db.database import Database
from app.db.errors import is_unavailable
from app.db.routing import ReadPreference, format_lsn, parse_lsn
from app.db.uow import read
from app.http.etags import not_modified, required_versions
from app.settings import BreakerSettings, DatabaseSettings


@pytest.mark.parametrize(
    ("error", "counts"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (asyncpg.exceptions.ConnectionDoesNotExistError("gone"), True),
        (asyncpg.exceptions.CannotConnectNowError("starting"), True),
        (asyncpg.exceptions.AdminShutdownError("bye"), True),
        (asyncpg.exceptions.UniqueViolationError("dup"), False),
        (asyncpg.exceptions.QueryCanceledError("statement timeout"), False),
        (sa_exc.TimeoutError("pool"), False),
        (asyncio.CancelledError(), False),
        (ValueError("domain"), False),
    ],
)
def test_only_unavailability_counts_against_the_breaker(error: BaseException, counts: bool) -> None:
    assert is_unavailable(error) is counts


def test_breaker_opens_fails_fast_and_lets_only_the_probe_through() -> None:
    breaker = DatabaseBreaker("db", BreakerSettings(fail_max=2, reset_timeout_seconds=0.2))
    for _ in range(2):
        breaker.check()
        breaker.record(ConnectionRefusedError())  # what acquire()/release() report
    assert breaker.state == "open"
    with pytest.raises(DatabaseUnavailable) as raised:
        breaker.check()
    assert raised.value.retry_after == 1
    time.sleep(0.25)
    with pytest.raises(DatabaseUnavailable):  # requests still fail fast
        breaker.check()
    ran = False
    with breaker.probe():  # the monitor's trial call
        ran = True
    assert ran
    assert breaker.state == "closed"
    breaker.check()


def test_a_failed_probe_reopens_the_breaker() -> None:
    breaker = DatabaseBreaker("db", BreakerSettings(fail_max=1, reset_timeout_seconds=0.1))
    breaker.record(ConnectionRefusedError())
    time.sleep(0.15)
    with pytest.raises(ConnectionRefusedError), breaker.probe():  # the trial runs, and fails
        raise ConnectionRefusedError()
    assert breaker.state == "open"
    with pytest.raises(DatabaseUnavailable), breaker.probe():  # reset timeout restarted
        pass


def test_a_success_ends_a_failure_streak() -> None:
    breaker = DatabaseBreaker("db", BreakerSettings(fail_max=3))
    breaker.record(TimeoutError())
    breaker.record(TimeoutError())
    assert breaker.fail_counter == 2
    breaker.record(None)
    assert breaker.fail_counter == 0
    assert breaker.state == "closed"


def test_calls_in_flight_when_the_breaker_opens_end_quietly() -> None:
    """Requests that started before the trip report their outcome into an open breaker: that
    must neither raise (it would leak their connection) nor move the state."""
    breaker = DatabaseBreaker("db", BreakerSettings(fail_max=1, reset_timeout_seconds=60))
    breaker.record(ConnectionRefusedError())
    assert breaker.state == "open"
    breaker.record(ConnectionRefusedError())
    breaker.record(None)
    assert breaker.state == "open"


def test_excluded_errors_do_not_open_the_breaker() -> None:
    breaker = DatabaseBreaker("db", BreakerSettings(fail_max=1))
    for error in (asyncpg.exceptions.UniqueViolationError("x"), sa_exc.TimeoutError("pool")):
        breaker.record(error)
    assert breaker.state == "closed"


def _database(**routing: object) -> Database:
    return Database(
        DatabaseSettings(
            primary={"url": "postgresql://a@127.0.0.1:1/x"},
            replicas=[
                {"url": "postgresql://a@127.0.0.1:2/x", "weight": 3},
                {"url": "postgresql://a@127.0.0.1:3/x", "weight": 1},
            ],
            routing=routing,
        )
    )


def _healthy(database: Database, lsn: int = 100) -> None:
    for node in database.replicas:
        node.health.reachable, node.health.lsn, node.health.lag_seconds = True, lsn, 0.0


def test_weighted_round_robin_gives_exact_shares() -> None:
    database = _database()
    _healthy(database)
    picks = [database.router.for_read(ReadPreference()).name for _ in range(400)]
    assert picks.count("replica-1") == 300
    assert picks.count("replica-2") == 100
    assert picks[:4].count("replica-1") == 3  # smooth: spread out, not in blocks


def test_routing_falls_back_to_primary_and_counts_why() -> None:
    database = _database(max_replica_lag_seconds=1.0)
    router = database.router
    assert router.for_read(ReadPreference()).name == "primary"  # nothing probed yet
    _healthy(database, lsn=100)
    assert router.for_read(ReadPreference(min_lsn=101)).name == "primary"
    assert router.for_read(ReadPreference(min_lsn=100)).name.startswith("replica")
    assert router.for_read(ReadPreference(strong=True)).name == "primary"
    for node in database.replicas:
        node.health.lag_seconds = 2.0
    assert router.for_read(ReadPreference()).name == "primary"
    assert router.fallbacks["no_eligible_replica"] == 3


def test_primary_outage_serves_stale_reads_from_a_reachable_replica() -> None:
    database = _database(max_replica_lag_seconds=1.0)
    _healthy(database)
    for node in database.replicas:
        node.health.lag_seconds = 30.0
    for _ in range(3):
        database.primary.breaker.record(ConnectionRefusedError())
    assert database.router.for_read(ReadPreference()).name.startswith("replica")
    assert database.router.fallbacks["stale_replica_read"] == 1
    strict = _database(stale_reads_on_primary_outage=False)
    for _ in range(3):
        strict.primary.breaker.record(ConnectionRefusedError())
    assert strict.router.for_read(ReadPreference()).name == "primary"


@pytest.mark.parametrize("lsn", [0, 1, 0x16_B374D848, (1 << 64) - 1])
def test_lsn_tokens_round_trip(lsn: int) -> None:
    assert parse_lsn(format_lsn(lsn)) == lsn


@pytest.mark.parametrize("token", ["", "abc", "1/zz", "/", "1//2", "-1/0"])
def test_bad_lsn_tokens_are_rejected(token: str) -> None:
    assert parse_lsn(token) is None


def test_etag_conditions() -> None:
    assert not_modified('"v3"', 3)
    assert not_modified('W/"v3"', 3)
    assert not_modified("*", 3)
    assert not not_modified('"v2", "v4"', 3)
    assert not not_modified(None, 3)
    assert required_versions('"v2", "v3"') == {2, 3}
    assert required_versions("*") is None
    with pytest.raises(PreconditionRequired):
        required_versions(None)
    with pytest.raises(PreconditionFailed):
        required_versions('W/"v3"')


class _ReadUoW:
    """A unit of work routed by a real router whose node fails (or not) on entry."""

    def __init__(self, factory: _ReadFactory, strong: bool, node: Any) -> None:
        self.factory, self.database = factory, factory.database
        self.preference = ReadPreference(strong=strong)
        self.node = node or self.database.router.for_read(self.preference)
        self.node_failed = False

    async def __aenter__(self) -> _ReadUoW:
        self.factory.runs.append(self.node.name)
        if self.node.name in self.factory.failing:
            self.node_failed = self.factory.node_fault
            raise DatabaseUnavailable("down")
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _ReadFactory:
    def __init__(self, failing: set[str], node_fault: bool = True, **routing: Any) -> None:
        self.failing, self.node_fault = failing, node_fault
        self.database = _database(**routing)
        _healthy(self.database)
        self.runs: list[str] = []

    def __call__(
        self, tenant_id: Any = None, *, read_only: bool, strong: bool, node: Any = None
    ) -> _ReadUoW:
        assert read_only
        return _ReadUoW(self, strong, node)


async def _answer(uow: Any) -> str:
    return "rows"


@pytest.mark.parametrize(
    ("failing", "node_fault", "strong", "runs"),
    [
        (set(), True, False, ["replica-1"]),  # no failure: one run
        ({"replica-1"}, True, False, ["replica-1", "replica-2"]),  # another replica
        ({"replica-1"}, False, False, ["replica-1"]),  # refused (tenant slots): no retry
        ({"replica-1", "replica-2"}, True, False, ["replica-1", "replica-2"]),  # once only
        ({"primary"}, True, True, ["primary"]),  # strong: no other node is fresh enough
    ],
)
async def test_a_read_its_node_failed_is_retried_once_on_another_node(
    failing: set[str], node_fault: bool, strong: bool, runs: list[str]
) -> None:
    factory = _ReadFactory(failing, node_fault)
    try:
        assert await read(factory, None, _answer, strong=strong) == "rows"  # type: ignore[arg-type]
    except DatabaseUnavailable:
        assert runs[-1] in failing
    assert factory.runs == runs
    assert factory.database.router.fallbacks["read_retried"] == len(runs) - 1


def test_retry_targets_another_replica_then_the_primary_and_stale_only_when_allowed() -> None:
    database = _database(max_replica_lag_seconds=1.0)
    router = database.router
    first, second = database.replicas
    _healthy(database)
    plain, strong = ReadPreference(), ReadPreference(strong=True)
    assert router.for_retry(first, plain) is second
    assert router.for_retry(first, ReadPreference(min_lsn=101)) is database.primary
    second.health.reachable = False
    assert router.for_retry(first, plain) is database.primary
    # The primary failed a read (it had fallen back there: replicas lagging): a reachable
    # replica answers it, stale, as the router does in a primary outage; never a strong read.
    first.health.lag_seconds = 30.0
    assert router.for_retry(database.primary, plain) is first
    assert router.fallbacks["stale_replica_read"] == 1
    assert router.for_retry(database.primary, strong) is None
    strict = _database(stale_reads_on_primary_outage=False)
    _healthy(strict)
    assert strict.router.for_retry(strict.primary, plain) is None
