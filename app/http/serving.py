"""How uvicorn runs the API: one set of options for `storefront serve` and the test launcher."""

from __future__ import annotations

from typing import Any

from app.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    return {
        "host": settings.server.host,
        "port": settings.server.port,
        "access_log": False,  # our middleware logs requests as JSON
        # The client address comes from server.trusted_proxies (app/http/client_address.py):
        # uvicorn's own X-Forwarded-For handling would trust any local client.
        "proxy_headers": False,
        "server_header": False,  # no `server: uvicorn` banner
        "log_level": settings.logging.level.lower(),
        "log_config": None,  # uvicorn's records go through our JSON logging (create_app)
        "lifespan": "on",
    }
