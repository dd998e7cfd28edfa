"""In-process cost of one request: drive the ASGI app directly (no sockets, no load generator).

    python -m bench.inprocess /v1/products/<id> --key <api key> [-n 5000] [--profile]
    python -m bench.inprocess /v1/products/<id> --bearer <access token> ...
    python -m bench.inprocess /v1/orders --key <api key> --body '{"items": [...], ...}'

With --body the request is a POST of that JSON with a new Idempotency-Key each time (201
expected); without it, a GET (200 expected).

Prints microseconds per request; with --profile, a pyinstrument report of where they go.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

from app.main import asgi


async def _one(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], body: bytes | None = None
) -> int:
    status = 0
    method = "GET"
    if body is not None:
        method = "POST"
        headers = [
            *headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"idempotency-key", uuid.uuid4().hex.encode()),
        ]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body or b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return status


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    credential = parser.add_mutually_exclusive_group(required=True)
    credential.add_argument("--key", help="an API key (X-API-Key)")
    credential.add_argument("--bearer", help="an access token (Authorization: Bearer)")
    parser.add_argument("--body", help="POST this JSON (a new Idempotency-Key each request)")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--all-frames", action="store_true", help="show library frames too")
    args = parser.parse_args()
    app = asgi()
    if args.key:
        headers = [(b"x-api-key", args.key.encode())]
    else:
        headers = [(b"authorization", f"Bearer {args.bearer}".encode())]
    headers.append((b"host", b"localhost"))
    body = args.body.encode() if args.body is not None else None
    expected = 200 if body is None else 201
    async with app.router.lifespan_context(app):
        for _ in range(200):  # warm caches and the pool
            status = await _one(app, args.path, headers, body)
            assert status == expected, f"{args.path} answered {status}"
        profiler: Any = None
        if args.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.001, async_mode="disabled")
            profiler.start()
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(args.n):
            await _one(app, args.path, headers, body)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False, show_all=args.all_frames))
    print(
        f"{elapsed / args.n * 1e6:.0f} µs wall, {cpu / args.n * 1e6:.0f} µs CPU per request"
        f" ({args.n} sequential requests)"
    )


if __name__ == "__main__":
    asyncio.run(main())
