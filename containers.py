"""THE container: the whole object graph of Storefront, in sections.

Application modules never import this file; routes are wired by string ids
(`Provide["catalog_service"]`). Tests build `Container()`, override providers
(`container.clock.override(...)`) and call `reset_singletons()` when a built singleton must see
the override.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from app.catalog.service import CatalogService
from app.core.clock import SystemClock
from app.db.database import Database, database_lifecycle
from app.db.uow import UnitOfWork
from app.http.middleware import Door
from app.identity.service import ApiKeyCache, ApiKeyService
from app.metrics import Metrics
from app.ops.service import OpsService, migration_head
from app.settings import load_settings
from app.tenants.service import TenantService


class Container(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(
        packages=["app.http", "app.catalog"], warn_unresolved=True
    )

    # -- settings -----------------------------------------------------------------------------
    settings = providers.Singleton(load_settings)
    clock = providers.Singleton(SystemClock)
    metrics = providers.Singleton(Metrics)

    # -- database: engines with tuned pools, breakers, replica router, health monitor ----------
    database = providers.Singleton(Database, settings=settings.provided.database)
    database_lifecycle = providers.Resource(database_lifecycle, database=database)
    uow_factory = providers.Factory(UnitOfWork, database=database)

    # -- tenants and identity ------------------------------------------------------------------
    tenant_service = providers.Singleton(TenantService, uow_factory=uow_factory.provider)
    api_key_cache = providers.Singleton(
        ApiKeyCache, ttl=settings.provided.auth.api_key_cache_ttl_seconds
    )
    api_key_service = providers.Singleton(
        ApiKeyService, uow_factory=uow_factory.provider, clock=clock, cache=api_key_cache
    )

    # -- catalog --------------------------------------------------------------------------------
    catalog_service = providers.Singleton(
        CatalogService, uow_factory=uow_factory.provider, clock=clock
    )

    # -- HTTP edge ------------------------------------------------------------------------------
    door = providers.Singleton(
        Door,
        limit=settings.provided.server.max_concurrent_requests,
        timeout=settings.provided.server.queue_timeout_seconds,
    )

    # -- operations -----------------------------------------------------------------------------
    ops_service = providers.Singleton(
        OpsService, database=database, expected_head=providers.Callable(migration_head)
    )
