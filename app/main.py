"""create_app(container) -> FastAPI. The lifespan starts and stops the container's resources."""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from dependency_injector.wiring import UnresolvedMarkerWarning
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.catalog.routes import HOT_ROUTES as CATALOG_HOT_ROUTES
from app.catalog.routes import router as catalog_router
from app.flags.routes import router as flags_router
from app.http.client_address import TrustedProxies
from app.http.docs import install_docs
from app.http.errors import install_error_handlers
from app.http.hot import install_hot_routes
from app.http.middleware import EdgeMiddleware
from app.http.openapi import TAGS, install_openapi, operation_id
from app.http.ops_routes import router as ops_router
from app.http.versioning import ApiVersioning
from app.identity.routes import router as identity_router
from app.logging import configure_logging
from app.orders.routes import HOT_ROUTES as ORDER_HOT_ROUTES
from app.orders.routes import router as orders_router
from app.reports.routes import router as reports_router
from app.secrets.routes import router as secrets_router
from app.sso.routes import router as sso_router
from app.tenants.routes import router as tenants_router
from app.versions.routes import router as versions_router


def create_app(container: Any) -> FastAPI:
    """Build the API around an already-configured container (tests pass an overridden one)."""
    settings = container.settings()
    configure_logging(settings.logging)
    with warnings.catch_warnings():
        # A typo in a Provide["..."] id must stop start-up, not inject the marker object.
        warnings.simplefilter("error", UnresolvedMarkerWarning)
        container.wire()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await container.init_resources()
        container.process_metrics(process="api")
        # Start-up objects live forever: keep them out of every future GC pass.
        gc.freeze()
        try:
            yield
        finally:
            await container.shutdown_resources()

    app = FastAPI(
        title="Storefront",
        version="1.0.0",
        description=(
            "Multi-tenant commerce backend: catalog, inventory, orders, payments.\n\n"
            "- Sign up with `POST /v1/tenants`, log in with `POST /v1/auth/token` and send"
            " `Authorization: Bearer <access_token>`; machines send `X-API-Key: sf_live_...`."
            " What each role and scope may do: docs/permissions.md.\n"
            "- Errors are RFC 9457 `application/problem+json` with a stable `code` and the"
            " `request_id`; every response carries `X-Request-ID`.\n"
            "- Writes return `X-Consistency-Token`; send it back on reads to see your writes"
            " (`X-Read-Consistency: strong` reads from the primary).\n"
            "- Lists take `limit` (1..100) and an opaque `cursor`; money is integer minor units"
            " plus an ISO currency.\n"
            "- 503 responses carry `Retry-After`."
        ),
        lifespan=lifespan,
        # FastAPI's native OpenTelemetry off: metrics are Prometheus (app/metrics.py) and the
        # access log is the edge's; left on, every request asks OpenTelemetry's global
        # providers whether anyone listens (about 4% of a product read: docs/decisions.md).
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # No redirects to a URL built from the request's Host header: /v1/products/ is a 404.
        redirect_slashes=False,
        openapi_url="/openapi.json" if settings.server.docs_enabled else None,
        docs_url=None,  # served by install_docs, with a Content-Security-Policy
        redoc_url=None,
        generate_unique_id_function=operation_id,
        openapi_tags=TAGS,
        servers=[
            {
                "url": "/",
                "description": "The server that serves this document (local, staging or"
                " production alike).",
                "x-internal": False,
            }
        ],
        contact={"name": "Storefront maintainers", "email": "api@storefront.dev"},
    )
    install_openapi(app)
    app.state.container = container
    install_error_handlers(app)
    if settings.server.docs_enabled:
        install_docs(app)
    routers = [catalog_router, orders_router]  # hot routes first: matching is in order
    routers += [identity_router, reports_router, flags_router, tenants_router, versions_router]
    routers += [secrets_router, sso_router, ops_router]
    for router in routers:
        app.include_router(router)
    # Inside the edge: added before it.
    install_hot_routes(app, [*CATALOG_HOT_ROUTES, *ORDER_HOT_ROUTES])
    container.api_deprecations().check_routes(
        {
            (method, route.path)
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
            for method in route.methods or ()
        }
    )
    app.add_middleware(
        ApiVersioning,
        pins=container.tenant_policies().api_version_of,
        deprecations=container.api_deprecations(),
        counted=container.version_usage().seen,
        openapi_url=app.openapi_url,
    )
    door = container.door()
    container.metrics().watch_door(door)
    app.add_middleware(
        EdgeMiddleware,
        metrics=container.metrics(),
        access_log=settings.logging.access_log,
        door=door,
        max_body_bytes=settings.server.max_body_bytes,
        body_timeout=settings.server.body_timeout_seconds,
        proxies=TrustedProxies(settings.server.trusted_proxies),
        body_budget=container.body_budget(),
    )
    return app


def asgi() -> FastAPI:
    """Entry point for `uvicorn --factory app.main:asgi`."""
    from containers import Container  # the composition root is only imported at the very top

    return create_app(Container())
