"""Unit of work: one connection, one transaction, one tenant; opened and committed by use cases.

Read-write: `BEGIN` + `set_config('app.tenant_id', …, true)` in one round trip (a simple-query
batch), so row-level security is scoped to the transaction. Read-only: no transaction; the
tenant is set at session level only when the pooled connection last served another tenant (cached
in the pool's per-connection `info`), so a hot read costs exactly its own query. With
`pgbouncer: true` server sessions are shared, so read-only work uses a transaction too, and
that transaction also sets the statement timeout (PgBouncer refuses it as a startup parameter).
Single-statement (`single_statement=True`): a write that is one statement is its own transaction
(PostgreSQL runs it atomically in autocommit), so it skips `BEGIN`/`COMMIT` and sets the tenant
as read-only work does; `commit()` takes the read-your-writes token. Behind PgBouncer it is a
transaction as any other write.

Fairness: a unit of work with a tenant holds one of that tenant's connection slots for the
node's role (app/db/fairness.py) from before pool checkout until the connection is released.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cached_property
from types import TracebackType
from typing import Any, NoReturn, Protocol, Self, TypeVar
from uuid import UUID

import structlog
from sqlalchemy.engine.interfaces import PoolProxiedConnection

from app.catalog.repository import ProductRepository
from app.core.errors import DatabaseUnavailable
from app.db import context
from app.db.database import Database
from app.db.errors import is_unavailable
from app.db.fairness import TenantGate
from app.db.invalidation import InvalidationRepository
from app.db.nodes import DatabaseNode
from app.db.routing import ReadPreference
from app.events.repository import InboxRepository, OutboxRepository
from app.flags.repository import FlagRepository
from app.identity.repository import (
    ApiKeyRepository,
    RefreshTokenRepository,
    RevocationRepository,
    UserRepository,
    WsTicketRepository,
)
from app.orders.repository import IdempotencyRepository, OrderEventRepository, OrderRepository
from app.reports.repository import SalesRepository
from app.secrets.repository import TenantSecretRepository
from app.sso.repository import SsoRepository
from app.tenancy.repository import TenantConfigRepository
from app.tenants.repository import TenantRepository
from app.versions.repository import ApiUsageRepository

log = structlog.get_logger(__name__)
T = TypeVar("T")
_COMMIT_LSN_SQL = "SELECT pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint"


class UnitOfWorkFactory(Protocol):
    def __call__(
        self,
        tenant_id: UUID | None = None,
        *,
        read_only: bool = False,
        strong: bool = False,
        node: DatabaseNode | None = None,
        single_statement: bool = False,
    ) -> UnitOfWork: ...


class UnitOfWork:
    def __init__(
        self,
        tenant_id: UUID | None = None,
        *,
        database: Database,
        read_only: bool = False,
        strong: bool = False,
        gate: TenantGate | None = None,
        node: DatabaseNode | None = None,
        single_statement: bool = False,
    ) -> None:
        if tenant_id is not None and not isinstance(tenant_id, UUID):
            # It is inlined into SQL (see _begin): only a real UUID is known to be safe.
            raise TypeError("tenant_id must be a uuid.UUID")
        self.database = database
        self.strong = strong
        self.tenant_id = tenant_id
        self.read_only = read_only
        # Chosen by the router on entry, unless given (`read` retrying on another node).
        self.node: DatabaseNode | None = node
        self.preference = ReadPreference()
        self.commit_lsn: int | None = None
        self._fairy: PoolProxiedConnection | None = None
        autocommit = read_only or single_statement
        self._transactional = not autocommit or database.settings.pgbouncer
        self._conn: Any = None
        # Fairness (app/db/fairness.py): a tenant's unit of work holds one of its slots for the
        # node's role while it holds a connection; tenant-less work is not capped.
        self._gate = gate if tenant_id is not None else None
        self._gated: str | None = None  # the role whose slot this unit of work holds
        # Its node failed it (unreachable, connection lost, breaker open): a read may be retried
        # elsewhere (`read`). Not set by a refusal of this tenant's slots.
        self.node_failed = False

    async def __aenter__(self) -> Self:
        request = context.current()
        preference = request.preference if request else ReadPreference()
        if self.strong:
            preference = ReadPreference(strong=True)
        self.preference = preference
        if self.node is None:
            router = self.database.router
            self.node = router.for_read(preference) if self.read_only else router.for_write()
        if self._gate is not None:
            assert self.tenant_id is not None
            await self._gate.acquire(self.tenant_id, self.node.role)  # else tenant_busy
            self._gated = self.node.role
        try:
            fairy = await self.node.acquire()
        except BaseException as error:
            self._ungate()
            self.node_failed = isinstance(error, DatabaseUnavailable) or is_unavailable(error)
            self._reraise(error)
        self._fairy = fairy
        try:
            self._conn = fairy.driver_connection
            await self._begin(fairy)
        except BaseException as error:
            self.node_failed = is_unavailable(error)
            await self._release(error)
            self._reraise(error)
        return self

    # Repositories are built on first use: a unit of work usually needs one or two of them.

    @cached_property
    def products(self) -> ProductRepository:
        return ProductRepository(self._conn, self.tenant_id)

    @cached_property
    def api_keys(self) -> ApiKeyRepository:
        return ApiKeyRepository(self._conn, self.tenant_id)

    @cached_property
    def users(self) -> UserRepository:
        return UserRepository(self._conn, self.tenant_id)

    @cached_property
    def refresh_tokens(self) -> RefreshTokenRepository:
        return RefreshTokenRepository(self._conn, self.tenant_id)

    @cached_property
    def revocations(self) -> RevocationRepository:
        return RevocationRepository(self._conn)

    @cached_property
    def invalidations(self) -> InvalidationRepository:
        """Publish on the invalidation channel: delivered when this unit of work commits."""
        return InvalidationRepository(self._conn)

    @cached_property
    def orders(self) -> OrderRepository:
        return OrderRepository(self._conn, self.tenant_id)

    @cached_property
    def order_events(self) -> OrderEventRepository:
        return OrderEventRepository(self._conn, self.tenant_id)

    @cached_property
    def ws_tickets(self) -> WsTicketRepository:
        return WsTicketRepository(self._conn, self.tenant_id)

    @cached_property
    def idempotency(self) -> IdempotencyRepository:
        return IdempotencyRepository(self._conn, self.tenant_id)

    @cached_property
    def outbox(self) -> OutboxRepository:
        return OutboxRepository(self._conn, self.tenant_id)

    @cached_property
    def inbox(self) -> InboxRepository:
        return InboxRepository(self._conn, self.tenant_id)

    @cached_property
    def sales(self) -> SalesRepository:
        return SalesRepository(self._conn, self.tenant_id)

    @cached_property
    def tenants(self) -> TenantRepository:
        return TenantRepository(self._conn)

    @cached_property
    def tenant_config(self) -> TenantConfigRepository:
        return TenantConfigRepository(self._conn)

    @cached_property
    def tenant_secrets(self) -> TenantSecretRepository:
        return TenantSecretRepository(self._conn, self.tenant_id)

    @cached_property
    def sso(self) -> SsoRepository:
        return SsoRepository(self._conn, self.tenant_id)

    @cached_property
    def api_usage(self) -> ApiUsageRepository:
        return ApiUsageRepository(self._conn)

    @cached_property
    def flags(self) -> FlagRepository:
        return FlagRepository(self._conn)

    async def _begin(self, fairy: PoolProxiedConnection) -> None:
        # str(UUID) is hex and dashes only, so inlining it is safe; the batch saves a round trip.
        tenant = str(self.tenant_id) if self.tenant_id else ""
        if self._transactional:
            mode = "READ ONLY" if self.read_only else "READ WRITE"
            extra = self.database.transaction_settings  # behind PgBouncer: statement_timeout
            await self._conn.execute(
                f"BEGIN {mode}; SELECT set_config('app.tenant_id', '{tenant}', true){extra}"
            )
        elif fairy.info.get("tenant") != tenant:
            fairy.info.pop("tenant", None)  # unknown until the SET has succeeded
            await self._conn.execute(f"SELECT set_config('app.tenant_id', '{tenant}', false)")
            fairy.info["tenant"] = tenant

    async def commit(self, *, token: bool = True) -> None:
        """Commit and remember the WAL position, the request's read-your-writes token (one
        more round trip). `token=False` skips it, for a write the same request follows with
        another one whose token, taken after this commit, covers both."""
        if self._transactional:
            try:
                await self._conn.execute("COMMIT")
            except Exception as error:
                self._reraise(error)
        if self.read_only or not token:
            return
        try:
            self.commit_lsn = await self._conn.fetchval(_COMMIT_LSN_SQL)
        except Exception as error:
            # The write is committed: failing the request now would invite a retry of it.
            # Without a token the client's next read is simply not pinned to the write.
            log.warning("db.commit_token_unavailable", error=repr(error))
            return
        request = context.current()
        if request is not None and self.commit_lsn is not None:
            request.commit_lsn = max(request.commit_lsn or 0, self.commit_lsn)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        error = exc
        try:
            if error is None and self._conn is not None and self._conn.is_in_transaction():
                await self._conn.execute("ROLLBACK")  # left without commit(): nothing is kept
        except BaseException as rollback_error:  # cancellation included: release regardless
            error = rollback_error
        await self._release(error)
        if error is not None and error is not exc:
            self._reraise(error)
        if exc is not None and is_unavailable(exc):
            self.node_failed = True
            self._reraise(exc)

    async def _release(self, error: BaseException | None) -> None:
        fairy, self._fairy = self._fairy, None
        try:
            if fairy is not None and self.node is not None:
                await self.node.release(fairy, error)
                if error is not None and is_unavailable(error):
                    await self.node.mark_unreachable(error)
        finally:
            self._ungate()

    def _ungate(self) -> None:
        role, self._gated = self._gated, None
        if role is not None and self._gate is not None and self.tenant_id is not None:
            self._gate.release(self.tenant_id, role)

    def _reraise(self, error: BaseException) -> NoReturn:
        """Unavailability becomes the domain's DatabaseUnavailable; anything else goes as is."""
        if isinstance(error, DatabaseUnavailable) or not is_unavailable(error):
            raise error
        name = self.node.name if self.node else "database"
        raise DatabaseUnavailable(f"database {name} is unavailable", retry_after=1) from error


async def read(
    uow_factory: UnitOfWorkFactory,
    tenant_id: UUID | None,
    query: Callable[[UnitOfWork], Awaitable[T]],
    *,
    strong: bool = False,
) -> T:
    """`query` in a read-only unit of work. When its node fails it (down, a pooled connection
    the server closed, its breaker open) the read is retried once on another node the router
    picks (`ReplicaRouter.for_retry`: a replica's failure goes to another eligible replica or
    the primary; a primary's to a reachable replica when stale reads are allowed in a primary
    outage, never for a strong read). `query` returns only once it has all its rows, so nothing
    reached the caller, and a read is safe to repeat. The failure is recorded on the node
    (breaker, health) as for any unit of work and counted as
    `storefront_db_read_fallbacks{reason="read_retried"}`. Writes are never retried here."""
    uow = uow_factory(tenant_id, read_only=True, strong=strong)
    try:
        async with uow:
            return await query(uow)
    except DatabaseUnavailable as error:
        failed = uow.node
        if not uow.node_failed or failed is None:
            raise
        router = uow.database.router
        target = router.for_retry(failed, uow.preference)
        if target is None:
            raise
        router.fallbacks["read_retried"] += 1
        log.warning("db.read_retried", failed=failed.name, on=target.name, error=str(error))
    async with uow_factory(tenant_id, read_only=True, strong=strong, node=target) as retry:
        return await query(retry)


async def read_fresh(
    uow_factory: UnitOfWorkFactory,
    tenant_id: UUID | None,
    query: Callable[[UnitOfWork], Awaitable[T | None]],
    *,
    primary_only: bool = False,
) -> T | None:
    """Replica first; a miss is retried on the primary: for rows a credential says exist but
    that may be younger than the replica's lag (a key, user or tenant made seconds ago).
    `primary_only` skips the replica (the caller knows the row just changed)."""
    for strong in (True,) if primary_only else (False, True):
        found = await read(uow_factory, tenant_id, query, strong=strong)
        if found is not None:
            return found
    return None
