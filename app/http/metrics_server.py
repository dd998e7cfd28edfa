"""`GET /metrics` of processes that serve no API (`storefront worker`): a one-route Starlette
app under uvicorn, in the process's own event loop, protected like the API's (operator token).

The process keeps its own signal handling: uvicorn's is switched off, and the server stops
when the block around it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from app.core.errors import DomainError
from app.http.errors import render_domain
from app.http.security import check_operator
from app.metrics import Metrics


def metrics_app(metrics: Metrics, operator_token: SecretStr | None) -> Starlette:
    async def endpoint(request: Request) -> Response:
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            check_operator(operator_token, token if scheme.lower() == "bearer" else None)
        except DomainError as error:
            return await render_domain(request, error)
        return Response(await metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", endpoint, methods=["GET"])])


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # SIGTERM/SIGINT belong to the process (the worker finishes its pass first)


@contextlib.asynccontextmanager
async def serving_metrics(
    metrics: Metrics, operator_token: SecretStr | None, host: str, port: int
) -> AsyncIterator[None]:
    """Serve /metrics on host:port for the length of the block; OSError if it cannot bind."""
    config = uvicorn.Config(
        metrics_app(metrics, operator_token),
        lifespan="off",
        access_log=False,
        server_header=False,
        log_config=None,
        log_level="warning",
    )
    server = _Server(config)
    listening = _listen(host, port)  # bound here: a port in use is one clear error, not a log
    task = asyncio.create_task(server.serve(sockets=[listening]), name="metrics-server")
    while not server.started:
        if task.done():
            listening.close()
            task.result()  # uvicorn's own start-up failure
            raise OSError(f"worker.metrics_port: /metrics did not start on {host}:{port}")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task
        listening.close()


def _listen(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    listening = socket.socket(family, kind, proto)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind(address)
    except OSError as error:
        listening.close()
        raise OSError(
            f"worker.metrics_port: cannot listen on {host}:{port}: {error.strerror}"
        ) from None
    return listening
