"""uvicorn's httptools protocol with the limits it lacks, so a client that sends nothing (or
headers one byte at a time, or megabytes of headers) cannot hold a socket, memory or a file
descriptor for long:

- a header deadline: from the moment a connection opens (or a new request on it begins) its
  headers must be complete within `server.header_timeout_seconds`, else 408 and close. Idle
  keep-alive connections are closed by uvicorn's own `timeout_keep_alive`;
- a header size cap: more than `server.max_header_bytes` before the headers are complete is a
  431 and close (httptools itself has no limit). Counted twice over: the bytes received while
  the headers are incomplete (headers trickled in), and the request line and each header as
  the parser reads them (a whole oversized block in one read is parsed at once);
- a request the parser refuses (a bad request line, an invalid header, a malformed
  `Content-Length`) is a 400 `request.malformed` problem+json and close, not uvicorn's plain
  text;
- a connection cap: past `server.max_connections` open connections a new one is closed at once,
  before it can use memory (the file descriptors of the process stay available).

These answers are written by the protocol itself, before any application code runs, as
problem+json without a request id. The request body has its own deadline and cap in
`EdgeMiddleware`.

WebSockets (`StorefrontWebSocketProtocol`, uvicorn's sans-I/O websockets protocol) differ from
uvicorn's in two places: a close frame is written even while the transport is paused (a client
that stopped reading must not keep its socket because the 1013 that drops it waits for it to
read), and on shutdown open sockets get 1001 (going away) instead of 1012. A socket whose
close frame cannot be flushed within `close_timeout` (a peer that never reads) is aborted, so
its buffer is freed. The kernel's send buffer of a socket is capped at
`websocket.send_buffer_bytes` (Linux autotunes it up to megabytes): what a client that stopped
reading can pin in the kernel stays small, and it is found slow after that much, not after
megabytes.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

_REASONS = {400: "Bad Request", 408: "Request Timeout", 431: "Request Header Fields Too Large"}


class _HeadersTooLarge(Exception):
    """Raised from a parser callback: the parser stops and uvicorn calls send_400_response."""


def _problem(status: int, code: str, detail: str) -> bytes:
    body = json.dumps(
        {
            "type": f"https://storefront.dev/problems/{code}",
            "title": _REASONS[status],
            "status": status,
            "detail": detail,
            "code": code,
        }
    ).encode()
    head = (
        f"HTTP/1.1 {status} {_REASONS[status]}\r\ncontent-type: application/problem+json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    header_timeout: float = 10.0
    max_header_bytes: int = 65536
    max_connections: int = 4096

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_headers = True
        self._header_bytes = 0
        self._header_timer: asyncio.TimerHandle | None = None
        self._parsed_bytes = 0  # the request line and headers the parser has read
        self._oversized = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.transport.abort()  # connection_lost follows and drops it from the set
            return
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._refuse(431, "request.headers_too_large", "request headers are too large")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = self._parsed_bytes = 0
        self._arm()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._parsed_bytes += size
        if self._parsed_bytes > self.max_header_bytes:
            self._oversized = True
            raise _HeadersTooLarge()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to whatever the parser refused, or stopped at (`_count`)."""
        if self._oversized:
            self._refuse(431, "request.headers_too_large", "request headers are too large")
        else:
            self._refuse(400, "request.malformed", "the request is not valid HTTP/1.1")

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._disarm()
        super().on_headers_complete()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._in_headers and not self.transport.is_closing():
            if self._header_bytes:  # a request was started: say why it ends
                self._refuse(408, "request.header_timeout", "request headers arrived too slowly")
            else:
                self.transport.close()  # nothing was sent: nobody to answer

    def _refuse(self, status: int, code: str, detail: str) -> None:
        self._disarm()
        self.transport.write(_problem(status, code, detail))
        self.transport.close()


def guarded_protocol(
    header_timeout: float, max_header_bytes: int, max_connections: int
) -> type[GuardedHttpToolsProtocol]:
    """The protocol class uvicorn instantiates per connection, with these limits."""
    return type(
        "StorefrontHttpProtocol",
        (GuardedHttpToolsProtocol,),
        {
            "header_timeout": header_timeout,
            "max_header_bytes": max_header_bytes,
            "max_connections": max_connections,
        },
    )


GOING_AWAY = 1001


class StorefrontWebSocketProtocol(WebSocketsSansIOProtocol):
    close_timeout = 10.0  # then a peer that has not read our close frame is aborted
    send_buffer_bytes = 65536

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.send_buffer_bytes)

    async def send(self, message: Any) -> None:
        if message["type"] == "websocket.close" and self.handshake_complete:
            # Past the write buffer's high-water mark uvicorn waits before every frame; the
            # close frame goes into the (bounded) buffer at once instead.
            self.writable.set()
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_or_abort)

    def _close_or_abort(self) -> None:
        self.close_timer = None
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # the peer does not read: free the buffer now
        else:
            self.transport.close()

    def shutdown(self) -> None:
        """uvicorn's shutdown, with 1001 (the server goes away) for open sockets."""
        if self.handshake_complete and not self.close_sent and not self.transport.is_closing():
            self.stop_keepalive()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
            self.conn.send_close(GOING_AWAY)
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.close_sent = True
            self.close_timer = self.loop.call_later(self.close_timeout, self._close_or_abort)
            return
        super().shutdown()


def websocket_protocol(send_buffer_bytes: int) -> type[StorefrontWebSocketProtocol]:
    """The WebSocket protocol class uvicorn instantiates per upgraded connection."""
    return type(
        "StorefrontWebSocket",
        (StorefrontWebSocketProtocol,),
        {"send_buffer_bytes": send_buffer_bytes},
    )
