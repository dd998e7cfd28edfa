"""Hostile clients against a real `storefront serve` process over real sockets: slow bodies,
bodies that never end, oversized bodies, spoofed X-Forwarded-For, and the server banner.

The attack from the outside run: 130 connections send headers with `Content-Length: 100000`, then
one byte every few seconds. Before the fix each held a door slot (the door admitted requests
before their body was read) and every real caller got 503 `server.busy` while readiness said
200; a `Content-Length` larger than the body held its connection forever.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from app.devcluster import LocalCluster
from app.identity.keys import hash_secret, new_secret
from tests.served_app import serve_cli

DOOR = 8  # slots in the served process: far fewer than the attacking connections
BODY_TIMEOUT = 2.0


@contextlib.contextmanager
def _serve(cluster: LocalCluster, **server: str) -> Iterator[str]:
    """`storefront serve` on a free port with these `server.*` settings."""
    env = {f"STOREFRONT_SERVER__{name.upper()}": value for name, value in server.items()}
    with serve_cli(cluster, env) as base:
        yield base


@pytest.fixture(scope="module")
def served(cluster: LocalCluster) -> Iterator[str]:
    with _serve(
        cluster,
        max_concurrent_requests=str(DOOR),
        queue_timeout_seconds="0.5",
        body_timeout_seconds=str(BODY_TIMEOUT),
        max_body_bytes="200000",
    ) as base:
        yield base


HEADER_TIMEOUT = 1.0
CONNECTIONS = 20


@pytest.fixture(scope="module")
def guarded(cluster: LocalCluster) -> Iterator[str]:
    """Tight connection-level limits, to attack them cheaply."""
    with _serve(
        cluster,
        header_timeout_seconds=str(HEADER_TIMEOUT),
        max_header_bytes="32768",
        max_connections=str(CONNECTIONS),
        body_timeout_seconds=str(BODY_TIMEOUT),
        max_body_bytes="200000",
        max_buffered_body_bytes="300000",
    ) as base:
        yield base


@pytest.fixture
def api_key(cluster: LocalCluster) -> str:
    secret = new_secret()
    tenant = uuid.uuid4()
    cluster.psql(
        "primary",
        f"INSERT INTO tenants (id, slug, name) VALUES ('{tenant}', 'slow', 'Slow');"
        "INSERT INTO api_keys (id, tenant_id, name, prefix, secret_hash, scopes) VALUES"
        f" (gen_random_uuid(), '{tenant}', 'k', 'sf_live_slow', '\\x{hash_secret(secret).hex()}',"
        " ARRAY['catalog:read', 'catalog:write']);",
    )
    return secret


def _port(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


def _open_slow_body(base: str, key: str, length: int = 100_000) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", _port(base)), timeout=30)
    sock.sendall(
        (
            "POST /v1/products HTTP/1.1\r\nHost: storefront\r\nContent-Type: application/json\r\n"
            f"X-API-Key: {key}\r\nContent-Length: {length}\r\n\r\n"
        ).encode()
    )
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything until the server closes the connection (a timeout here fails the test)."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _status_and_body(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def test_slow_bodies_hold_no_door_slot_and_get_a_408(served: str, api_key: str) -> None:
    attackers = [_open_slow_body(served, api_key) for _ in range(130)]
    stop = threading.Event()

    def trickle() -> None:  # one byte per connection every second, as the attack did
        while not stop.wait(1.0):
            for sock in attackers:
                with contextlib.suppress(OSError):
                    sock.sendall(b"{")

    dripper = threading.Thread(target=trickle, daemon=True)
    dripper.start()
    try:
        headers = {"X-API-Key": api_key}
        with httpx.Client(base_url=served, timeout=10) as client:
            statuses = []
            ready = []
            deadline = time.monotonic() + BODY_TIMEOUT * 0.8
            while time.monotonic() < deadline:  # all while every attacker is still connected
                statuses.append(client.get("/v1/products", headers=headers).status_code)
                ready.append(client.get("/health/ready").status_code)
                time.sleep(0.05)
        assert statuses
        assert set(statuses) == {200}, statuses
        assert set(ready) == {200}, ready
        # Past the body deadline every attacker gets a 408 problem and its connection closes.
        # (The trickle stops first: bytes arriving at a closed socket would reset it.)
        stop.set()
        dripper.join()
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(_read_all, attackers))
    finally:
        stop.set()
        dripper.join()
        for sock in attackers:
            sock.close()
    for raw in answers:
        status, response_headers, body = _status_and_body(raw)
        assert status == 408, raw[:300]
        assert response_headers["content-type"].startswith("application/problem+json")
        assert response_headers["connection"] == "close"
        assert json.loads(body)["code"] == "request.body_timeout"


def test_a_content_length_longer_than_the_body_does_not_hold_the_connection(
    served: str, api_key: str
) -> None:
    sock = _open_slow_body(served, api_key, length=1000)
    sock.sendall(b'{"sku": "x"')  # and then nothing more
    started = time.monotonic()
    status, _, _ = _status_and_body(_read_all(sock))  # returns only once the server closed it
    sock.close()
    assert status == 408
    assert time.monotonic() - started < BODY_TIMEOUT + 5


def test_oversized_bodies_are_refused_before_they_are_read(served: str, api_key: str) -> None:
    # Declared too large: 413 at once, without reading (or parsing) a byte of it.
    sock = _open_slow_body(served, api_key, length=21_000_000)
    status, headers, body = _status_and_body(_read_all(sock))
    sock.close()
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body)["code"] == "request.too_large"
    # Chunked (no Content-Length): refused as soon as the cap (200,000 bytes) is passed.
    sock = socket.create_connection(("127.0.0.1", _port(served)), timeout=30)
    sock.sendall(
        b"POST /v1/products HTTP/1.1\r\nHost: storefront\r\nContent-Type: application/json\r\n"
        + f"X-API-Key: {api_key}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    )
    for size in (65536, 65536, 65536, 3393):  # 200,001 bytes
        sock.sendall(f"{size:x}\r\n".encode() + b"x" * size + b"\r\n")
    sock.sendall(b"0\r\n\r\n")
    status, headers, body = _status_and_body(_read_all(sock))
    sock.close()
    assert status == 413
    assert json.loads(body)["code"] == "request.too_large"


def test_forwarded_for_from_an_untrusted_peer_does_not_change_the_client(
    served: str, cluster: LocalCluster
) -> None:
    """800 failed logins with a rotating X-Forwarded-For once produced no 429: the per-IP
    lockout (20 failures) must count them all against the real peer."""
    statuses = []
    with httpx.Client(base_url=served, timeout=10) as client:
        for n in range(25):
            response = client.post(
                "/v1/auth/token",
                data={"username": f"nobody{n}@example.com", "password": "wrong-password-1"},
                headers={"X-Forwarded-For": f"203.0.113.{n}"},
            )
            statuses.append(response.status_code)
    assert statuses[:20] == [401] * 20
    assert statuses[20:] == [429] * 5
    assert int(response.headers["retry-after"]) > 0


def test_no_server_banner_and_security_headers(served: str, api_key: str) -> None:
    with httpx.Client(base_url=served, timeout=10) as client:
        response = client.get("/v1/products", headers={"X-API-Key": api_key})
    assert response.status_code == 200
    assert "server" not in response.headers
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["cache-control"] == "no-store"


def _connect(base: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", _port(base)), timeout=10)


def test_a_connection_that_sends_nothing_is_closed(guarded: str) -> None:
    sock = _connect(guarded)
    started = time.monotonic()
    assert _read_all(sock) == b""  # closed by the server, without an answer
    sock.close()
    assert time.monotonic() - started < HEADER_TIMEOUT + 5


def test_headers_sent_one_byte_at_a_time_get_a_408(guarded: str) -> None:
    sock = _connect(guarded)
    closed_after = None
    started = time.monotonic()
    with contextlib.suppress(OSError):  # the server may close while we still send
        for byte in b"GET /v1/products HTTP/1.1\r\nHost: storefront\r\nX-Slow: " + b"a" * 100:
            sock.sendall(bytes([byte]))
            time.sleep(0.05)
    raw = _read_all(sock)
    closed_after = time.monotonic() - started
    sock.close()
    status, headers, body = _status_and_body(raw)
    assert status == 408
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "request.header_timeout"
    assert closed_after < HEADER_TIMEOUT + 5


def test_oversized_headers_get_a_431(guarded: str) -> None:
    sock = _connect(guarded)
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: storefront\r\nX-Big: " + b"a" * 40000)
    status, _, body = _status_and_body(_read_all(sock))
    sock.close()
    assert status == 431
    assert json.loads(body)["code"] == "request.headers_too_large"


def test_a_whole_oversized_header_block_in_one_write_gets_a_431(guarded: str) -> None:
    """Complete headers over the cap, arriving at once: the parser reads them in one go (the
    count of bytes received before the headers end never sees them incomplete)."""
    many = b"".join(b"X-Pad-%d: %s\r\n" % (n, b"a" * 1000) for n in range(40))
    sock = _connect(guarded)
    with contextlib.suppress(OSError):
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: storefront\r\n" + many + b"\r\n")
    status, headers, body = _status_and_body(_read_all(sock))
    sock.close()
    assert status == 431
    assert headers["content-type"] == "application/problem+json"
    assert json.loads(body)["code"] == "request.headers_too_large"


def test_malformed_http_gets_a_problem_json_400(guarded: str) -> None:
    """What the parser refuses (here a Content-Length that is not a number, as schemathesis
    sent it) is a 400 problem+json like every other 400 the API documents."""
    for raw in (
        b"GET /v1/products HTTP/1.1\r\nHost: storefront\r\ncontent-length: e+_p.\r\n\r\n",
        b"GET /v1/products HTTP/1.1\r\nHost: storefront\r\nBad Header: x\r\n\r\n",
    ):
        sock = _connect(guarded)
        sock.sendall(raw)
        status, headers, body = _status_and_body(_read_all(sock))
        sock.close()
        assert status == 400, raw
        assert headers["content-type"] == "application/problem+json"
        assert json.loads(body)["code"] == "request.malformed"


def test_connections_past_the_cap_are_closed_and_capacity_comes_back(guarded: str) -> None:
    idle = [_connect(guarded) for _ in range(CONNECTIONS)]
    try:
        time.sleep(0.2)
        extra = _connect(guarded)
        extra.settimeout(HEADER_TIMEOUT / 2)  # closed at once, well before any header timeout
        with contextlib.suppress(ConnectionResetError):  # an abort may arrive as a reset
            assert extra.recv(1) == b""
        extra.close()
    finally:
        for sock in idle:  # (the server closes them after the header timeout anyway)
            sock.close()
    time.sleep(0.2)
    with httpx.Client(base_url=guarded, timeout=10) as client:
        assert client.get("/health/live").status_code == 200


def test_bodies_in_flight_share_one_memory_budget(guarded: str, api_key: str) -> None:
    holders = [_open_slow_body(guarded, api_key, length=150_000) for _ in range(2)]
    try:
        time.sleep(0.3)  # both bodies are being received: the 300 kB budget is taken
        third = _open_slow_body(guarded, api_key, length=150_000)
        status, headers, body = _status_and_body(_read_all(third))
        third.close()
        assert status == 503
        assert headers["connection"] == "close"
        assert json.loads(body)["code"] == "server.busy"
        assert int(headers["retry-after"]) >= 1
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.3)  # the holders' budget is given back when their requests end
    with httpx.Client(base_url=guarded, timeout=10) as client:
        response = client.post(
            "/v1/products",
            json={"sku": "after", "name": "After", "price": {"amount": 1, "currency": "EUR"}},
            headers={"X-API-Key": api_key},
        )
    assert response.status_code == 201, response.text
