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
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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
