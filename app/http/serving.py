"""How uvicorn runs the API: one set of options for `storefront serve` and the test launcher."""

from __future__ import annotations

from typing import Any

from app.http.protocol import guarded_protocol, websocket_protocol
from app.settings import Settings


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    server = settings.server
    return {
        "host": server.host,
        "port": server.port,
        # httptools with a header deadline, a header size cap and a connection cap
        # (app/http/protocol.py); the body's deadline and cap are EdgeMiddleware's.
        "http": guarded_protocol(
            server.header_timeout_seconds, server.max_header_bytes, server.max_connections
        ),
        # Close frames past a paused buffer, 1001 on shutdown, a capped kernel send buffer
        # (app/http/protocol.py).
        "ws": websocket_protocol(settings.websocket.send_buffer_bytes),
        "timeout_keep_alive": server.keep_alive_seconds,
        "timeout_graceful_shutdown": server.graceful_shutdown_seconds,
        "access_log": False,  # our middleware logs requests as JSON
        # The client address comes from server.trusted_proxies (app/http/client_address.py):
        # uvicorn's own X-Forwarded-For handling would trust any local client.
        "proxy_headers": False,
        "server_header": False,  # no `server: uvicorn` banner
        "log_level": settings.logging.level.lower(),
        "log_config": None,  # uvicorn's records go through our JSON logging (create_app)
        "lifespan": "on",
    }
