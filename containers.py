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
from app.db.fairness import TenantGate
from app.db.invalidation import InvalidationListener, invalidation_listening
from app.db.uow import UnitOfWork
from app.events.bus import InProcessBus, event_publisher, publisher_lifecycle
from app.events.relay import OutboxRelay, listen_dsn, relay_in_api
from app.events.replay import Replayer
from app.flags.provider import OpenFeatureFlags
from app.flags.service import FlagService, FlagStore
from app.http.middleware import BodyBudget, Door
from app.identity.authenticator import Authenticator
from app.identity.cache import CredentialCache
from app.identity.passwords import PasswordHasher
from app.identity.revocations import Revocations, tombstone_seconds
from app.identity.service import (
    ApiKeyService,
    ApiKeyUsage,
    AuthService,
    UserService,
    api_key_usage_flusher,
)
from app.identity.throttle import ApiKeyThrottle, LoginThrottle
from app.identity.tickets import WsTicketService
from app.identity.tokens import TokenService
from app.metrics import Metrics, watch_sources
from app.ops.service import OpsService, migration_head, schema_compatibility
from app.orders.live import OrderEventHub, live_dsn, live_hub
from app.orders.service import OrderService
from app.payments.gateway import (
    HttpPaymentGateway,
    open_provider_transport,
    provider_transport_lifecycle,
)
from app.payments.sandbox import SandboxProvider
from app.ratelimit.limiter import rate_limit_storage, rate_limiter, rate_limiter_lifecycle
from app.ratelimit.quotas import AddressQuotas, TenantQuotas
from app.reports.service import ReportService, SalesProjector
from app.secrets.box import SecretBox
from app.secrets.service import SecretKeyRotation, WebhookSecrets
from app.settings import load_settings
from app.sso.oidc import OidcClient
from app.sso.service import SsoConfigService, SsoService
from app.sso.transport import open_sso_http, sso_http_lifecycle
from app.tenancy.policies import TenantPolicies
from app.tenancy.service import TenancyService
from app.tenants.service import SignupLimit, TenantService
from app.versions.deprecations import Deprecations
from app.versions.usage import VersionUsage, version_usage_flusher


class Container(containers.DeclarativeContainer):
    # The modules with @inject functions (routes and edge dependencies), not whole packages:
    # wiring inspects every member of every module it is given.
    wiring_config = containers.WiringConfiguration(
        modules=[
            "app.http.security",
            "app.http.ratelimit",
            "app.http.ops_routes",
            "app.catalog.routes",
            "app.identity.routes",
            "app.tenants.routes",
            "app.orders.routes",
            "app.reports.routes",
            "app.flags.routes",
            "app.secrets.routes",
            "app.sso.routes",
            "app.versions.routes",
        ],
        warn_unresolved=True,
    )

    # -- settings -----------------------------------------------------------------------------
    settings = providers.Singleton(load_settings)
    clock = providers.Singleton(SystemClock)
    metrics = providers.Singleton(Metrics)

    # -- database: engines with tuned pools, breakers, replica router, health monitor ----------
    database = providers.Singleton(Database, settings=settings.provided.database)
    database_lifecycle = providers.Resource(database_lifecycle, database=database)
    # Tenant policies (defaults < plan < override < emergency), cached per process and kept
    # fresh through the invalidation channel (below). They read the tenants table through
    # tenant-less units of work, which the fairness gate never caps.
    tenant_policies = providers.Singleton(
        TenantPolicies,
        uow_factory=providers.Factory(UnitOfWork, database=database).provider,
        settings=settings.provided.tenancy,
        plans=settings.provided.plans,
        resync_margin_seconds=settings.provided.invalidation.resync_margin_seconds,
    )
    # Noisy-neighbour fairness: a tenant's connections per role are capped by its policy,
    # before pool checkout (app/db/fairness.py).
    tenant_gate = providers.Singleton(
        TenantGate,
        policies=tenant_policies,
        wait_seconds=settings.provided.tenancy.db_wait_seconds,
    )
    uow_factory = providers.Factory(UnitOfWork, database=database, gate=tenant_gate)

    # -- rate limits: the `limits` library on Redis (shared) or memory (app/ratelimit/) --------
    rate_limit_settings = settings.provided.rate_limits
    rate_limit_storage = providers.Singleton(
        rate_limit_storage,
        redis_url=settings.provided.redis.url,
        timeout_seconds=rate_limit_settings.redis_timeout_seconds,
    )
    rate_limiter = providers.Singleton(
        rate_limiter,
        storage=rate_limit_storage,
        settings=rate_limit_settings,
        on_fail_open=metrics.provided.rate_limit_fail_open,
    )
    rate_limiter_lifecycle = providers.Resource(rate_limiter_lifecycle, limiter=rate_limiter)
    tenant_quotas = providers.Singleton(
        TenantQuotas,
        limiter=rate_limiter,
        policies=tenant_policies,
        enabled=rate_limit_settings.enabled,
    )
    address_quotas = providers.Singleton(
        AddressQuotas,
        limiter=rate_limiter,
        settings=rate_limit_settings.anonymous,
        enabled=rate_limit_settings.enabled,
    )

    # -- identity: passwords, tokens, login throttling, credential caches ----------------------
    auth_settings = settings.provided.auth
    password_hasher = providers.Singleton(PasswordHasher, settings=auth_settings.password)
    token_service = providers.Singleton(TokenService, settings=auth_settings.tokens, clock=clock)
    login_throttle = providers.Singleton(
        LoginThrottle, limiter=rate_limiter, settings=auth_settings.lockout
    )
    credential_cache = providers.Singleton(
        CredentialCache,
        api_key_ttl=auth_settings.api_key_cache_ttl_seconds,
        user_ttl=auth_settings.user_cache_ttl_seconds,
        clock=clock,
        tombstone_seconds=providers.Callable(
            tombstone_seconds, auth_settings, settings.provided.database.routing
        ),
    )
    # Durable revocations: written by the revoking use case, read by every process through
    # the invalidation channel (below).
    revocations = providers.Singleton(
        Revocations,
        uow_factory=uow_factory.provider,
        clock=clock,
        cache=credential_cache,
        resync_margin_seconds=settings.provided.invalidation.resync_margin_seconds,
    )
    api_key_throttle = providers.Singleton(
        ApiKeyThrottle,
        limiter=rate_limiter,
        clock=clock,
        max_failures=auth_settings.api_key_failures_per_ip,
        window_seconds=auth_settings.api_key_failure_window_seconds,
    )

    # -- feature flags: OpenFeature over a PostgreSQL-loaded snapshot (app/flags/) -------------
    # `flag_store` holds every flag in memory (an invalidation subscriber, below); `flags` is
    # the `Flags` protocol routes and services ask, an OpenFeature client whose provider reads
    # that snapshot. `flag_service` is the operator's writer (CLI).
    flag_store = providers.Singleton(FlagStore, uow_factory=uow_factory.provider)
    flags = providers.Singleton(OpenFeatureFlags, store=flag_store)
    flag_service = providers.Singleton(FlagService, uow_factory=uow_factory.provider, clock=clock)

    # -- cross-process invalidation: LISTEN/NOTIFY + periodic re-read (app/db/invalidation.py) -
    # Every subscriber is listed here (flags, revocations, tenant policies). API processes run the
    # listener, started before they serve; the worker caches nothing it must drop, so it does
    # not. `listen_dsn` is None behind PgBouncer: periodic re-reads only.
    invalidation_listener = providers.Singleton(
        InvalidationListener,
        subscribers=providers.List(flag_store, revocations, tenant_policies),
        resync_interval=settings.provided.invalidation.resync_interval_seconds,
        on_state=metrics.provided.invalidation_state,
    )
    invalidation_listening = providers.Resource(
        invalidation_listening,
        listener=invalidation_listener,
        listen_dsn=providers.Callable(listen_dsn, settings.provided.database),
        database=database_lifecycle,
    )
    api_key_usage = providers.Singleton(ApiKeyUsage, uow_factory=uow_factory.provider, clock=clock)
    api_key_usage_flusher = providers.Resource(
        api_key_usage_flusher,
        usage=api_key_usage,
        interval=auth_settings.api_key_usage_flush_seconds,
    )
    api_key_service = providers.Singleton(
        ApiKeyService,
        uow_factory=uow_factory.provider,
        clock=clock,
        cache=credential_cache,
        usage=api_key_usage,
        rotation_grace_seconds=auth_settings.api_key_rotation_grace_seconds,
        revocations=revocations,
        throttle=api_key_throttle,
    )
    user_service = providers.Singleton(
        UserService,
        uow_factory=uow_factory.provider,
        clock=clock,
        hasher=password_hasher,
        cache=credential_cache,
        revocations=revocations,
    )
    auth_service = providers.Singleton(
        AuthService,
        uow_factory=uow_factory.provider,
        clock=clock,
        hasher=password_hasher,
        tokens=token_service,
        throttle=login_throttle,
        cache=credential_cache,
        on_event=metrics.provided.auth_event,
        revocations=revocations,
    )
    authenticator = providers.Singleton(
        Authenticator,
        api_keys=api_key_service,
        tokens=token_service,
        uow_factory=uow_factory.provider,
        clock=clock,
        cache=credential_cache,
    )
    signup_limit = providers.Singleton(
        SignupLimit, limiter=rate_limiter, settings=auth_settings.signup_limit
    )
    tenant_service = providers.Singleton(
        TenantService,
        uow_factory=uow_factory.provider,
        hasher=password_hasher,
        signup_enabled=auth_settings.signup_enabled,
        signup_limit=signup_limit,
    )

    # -- tenant secrets at rest: Fernet keys from secrets.keys (app/secrets/box.py) -----------
    secret_box = providers.Singleton(SecretBox, keys=settings.provided.secrets.keys)
    webhook_secrets = providers.Singleton(
        WebhookSecrets, uow_factory=uow_factory.provider, box=secret_box, clock=clock
    )
    secret_key_rotation = providers.Singleton(
        SecretKeyRotation,
        uow_factory=uow_factory.provider,
        box=secret_box,
        batch_size=settings.provided.secrets.rotation_batch_size,
    )

    # -- single sign-on: OpenID Connect per tenant, on authlib (app/sso/) ----------------------
    # `sso_http`: the one httpx client to identity providers (timeouts from sso.*; tests
    # override it to reach a test provider); `sso_oidc` holds the discovery and key-set caches.
    sso_settings = settings.provided.sso
    sso_http = providers.Singleton(open_sso_http, settings=sso_settings)
    sso_http_lifecycle = providers.Resource(sso_http_lifecycle, client=sso_http)
    sso_oidc = providers.Singleton(OidcClient, http=sso_http, clock=clock, settings=sso_settings)
    sso_config_service = providers.Singleton(
        SsoConfigService,
        uow_factory=uow_factory.provider,
        box=secret_box,
        clock=clock,
        settings=sso_settings,
    )
    sso_service = providers.Singleton(
        SsoService,
        uow_factory=uow_factory.provider,
        clock=clock,
        oidc=sso_oidc,
        box=secret_box,
        auth=auth_service,
        hasher=password_hasher,
        settings=sso_settings,
    )

    # -- catalog --------------------------------------------------------------------------------
    catalog_service = providers.Singleton(
        CatalogService, uow_factory=uow_factory.provider, clock=clock, flags=flags
    )

    # -- payments and orders ---------------------------------------------------------------------
    sandbox_provider = providers.Singleton(SandboxProvider)
    payment_transport = providers.Singleton(
        open_provider_transport, settings=settings.provided.payments, sandbox=sandbox_provider
    )
    payment_transport_lifecycle = providers.Resource(
        provider_transport_lifecycle, transport=payment_transport
    )
    payment_gateway = providers.Singleton(
        HttpPaymentGateway,
        transport=payment_transport,
        settings=settings.provided.payments,
        observer=metrics,
    )
    order_service = providers.Singleton(
        OrderService,
        uow_factory=uow_factory.provider,
        clock=clock,
        gateway=payment_gateway,
        recovery_age_seconds=settings.provided.orders.recovery_age_seconds,
        observer=metrics,
    )

    # -- live order status over WebSocket (app/orders/live.py, app/http/websocket.py) ---------
    # One LISTEN connection per API process (the hub's Resource) feeds every socket of the
    # process; `live_dsn` is websocket.listen_url, else the primary's (None behind PgBouncer:
    # sockets are refused with 503).
    ws_ticket_service = providers.Singleton(
        WsTicketService,
        uow_factory=uow_factory.provider,
        clock=clock,
        ttl_seconds=settings.provided.websocket.ticket_ttl_seconds,
    )
    order_event_hub = providers.Singleton(
        OrderEventHub,
        uow_factory=uow_factory.provider,
        queue_size=settings.provided.websocket.queue_size,
        backfill_limit=settings.provided.websocket.backfill_limit,
        observer=metrics,
    )
    order_event_hub_lifecycle = providers.Resource(
        live_hub,
        hub=order_event_hub,
        listen_dsn=providers.Callable(
            live_dsn,
            settings.provided.websocket.listen_url,
            providers.Callable(listen_dsn, settings.provided.database),
        ),
    )

    # -- events: outbox relay, publisher, the sales read model --------------------------------
    sales_projector = providers.Singleton(SalesProjector, uow_factory=uow_factory.provider)
    # Without a broker, the read model consumes in the relay's own task.
    in_process_bus = providers.Singleton(InProcessBus, sales_projector.provided.handle)
    event_publisher = providers.Singleton(
        event_publisher,
        url=settings.provided.broker.url,
        exchange=settings.provided.broker.exchange,
        bus=in_process_bus,
    )
    event_publisher_lifecycle = providers.Resource(publisher_lifecycle, publisher=event_publisher)
    outbox_relay = providers.Singleton(
        OutboxRelay,
        uow_factory=uow_factory.provider,
        publisher=event_publisher,
        clock=clock,
        settings=settings.provided.outbox,
        on_result=metrics.provided.outbox_result,
        on_dead_letter=metrics.provided.event_dead_lettered,
    )
    outbox_relay_in_api = providers.Resource(
        relay_in_api,
        relay=outbox_relay,
        enabled=settings.provided.outbox.relay_in_api,
        listen_dsn=providers.Callable(listen_dsn, settings.provided.database),
    )
    report_service = providers.Singleton(ReportService, uow_factory=uow_factory.provider)
    # `storefront events replay`: the read models it can rebuild from the retained outbox.
    replayer = providers.Singleton(
        Replayer,
        uow_factory=uow_factory.provider,
        projections=providers.List(sales_projector),
        settings=settings.provided.outbox,
    )

    # -- metrics of a long-running process: `process_metrics(process="api" | "worker")` once ----
    process_metrics = providers.Callable(
        watch_sources,
        metrics=metrics,
        database=database,
        gate=tenant_gate,
        top_tenants=settings.provided.tenancy.metrics_top_tenants,
        gateway=payment_gateway,
        backlog=outbox_relay.provided.backlog,
    )

    # -- HTTP edge ------------------------------------------------------------------------------
    api_deprecations = providers.Singleton(
        Deprecations, entries=settings.provided.api.deprecations, clock=clock
    )
    # Requests per tenant and API version, written every `api.usage_flush_seconds`.
    version_usage = providers.Singleton(
        VersionUsage, uow_factory=uow_factory.provider, clock=clock, metrics=metrics
    )
    version_usage_flusher = providers.Resource(
        version_usage_flusher,
        usage=version_usage,
        interval=settings.provided.api.usage_flush_seconds,
    )
    door = providers.Singleton(
        Door,
        limit=settings.provided.server.max_concurrent_requests,
        timeout=settings.provided.server.queue_timeout_seconds,
    )
    body_budget = providers.Singleton(
        BodyBudget, limit=settings.provided.server.max_buffered_body_bytes
    )

    # -- operations -----------------------------------------------------------------------------
    ops_service = providers.Singleton(
        OpsService,
        database=database,
        expected_head=providers.Callable(migration_head),
        door=door,
        gate=tenant_gate,
        compatible=providers.Callable(schema_compatibility),
    )
    tenancy_service = providers.Singleton(
        TenancyService,
        uow_factory=uow_factory.provider,
        policies=tenant_policies,
        gate=tenant_gate,
        quotas=tenant_quotas,
        flags=flags,
        deprecations=api_deprecations,
    )
