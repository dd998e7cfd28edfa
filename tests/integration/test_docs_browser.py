"""/docs and /redoc render their operation list in a real browser that can reach nothing but
loopback: headless Chromium (Debian's `chromium`, installed by the test set-up when missing)
against the app served as a real process. Chromium's own network log proves where it went; the
rendered DOM must list exactly the operations of /openapi.json; a screenshot of each page is
kept in the test's tmp dir."""

from __future__ import annotations

import html
import json
import re
import struct
import subprocess
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.served_app import ServedApp, free_port
from tests.tooling import debian_tool

# Operations every build of the API has, whatever their operationIds or summaries say.
KNOWN = {("get", "/v1/products"), ("post", "/v1/products"), ("post", "/v1/orders")}
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
ATTEMPTS = 3  # a starved run on a loaded 2-core machine is tried again; nothing here is timed
Operations = set[tuple[str, str]]


def swagger_operations(dom: str) -> Operations:
    """Swagger UI's opblocks: each summary has the method, then the path in data-path."""
    found = re.findall(r'opblock-summary-method">(\w+)<.*?data-path="([^"]+)"', dom, re.DOTALL)
    return {(method.lower(), html.unescape(path)) for method, path in found}


def redoc_operations(dom: str) -> Operations:
    """ReDoc's operation sections: each shows its method and path above the samples."""
    found = re.findall(r'http-verb (\w+)">\w+</span><span[^>]*>([^<]+)</span>', dom)
    return {(method, html.unescape(path)) for method, path in found}


PAGES: dict[str, Callable[[str], Operations]] = {
    "/docs": swagger_operations,
    "/redoc": redoc_operations,
}
# What the Content-Security-Policy may block on each page, as Chromium's console reports it
# (app/http/docs.py says why these two): anything else blocked is a page that needs more.
BLOCKED = {
    "/docs": set(),
    "/redoc": {
        "Applying inline style",
        "Loading the image 'https://cdn.redoc.ly/redoc/logo-mini.svg'",
    },
}
_VIOLATION = re.compile(r'"([^"]*?) violates the following Content Security Policy')


@pytest.fixture(scope="module")
def chromium() -> str:
    return debian_tool("chromium", "chromium")


def browse(chromium: str, url: str, workdir: Path, *action: str) -> tuple[str, set[str]]:
    """Run Chromium on `url` with no way out but loopback; its stdout and what the page's
    policy blocked. Its net log and stderr (console messages) stay in `workdir`."""
    workdir.mkdir(parents=True, exist_ok=True)
    net_log = workdir / "net-log.json"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--disable-dev-shm-usage",
        f"--user-data-dir={workdir / 'profile'}",
        # No name resolves (so no DNS query leaves), and every URL but loopback goes to a
        # proxy on a port where nothing listens.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        f"--proxy-server=http://127.0.0.1:{free_port()}",
        "--proxy-bypass-list=127.0.0.1",
        f"--log-net-log={net_log}",
        "--enable-logging=stderr",
        "--window-size=1280,2400",
        "--virtual-time-budget=60000",
        *action,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    (workdir / "stderr.txt").write_text(done.stderr)
    assert done.returncode == 0, done.stderr[-3000:]
    assert_loopback_only(net_log, url)
    blocked = {re.sub(r"blob:[^']*", "blob:", v) for v in _VIOLATION.findall(done.stderr)}
    return done.stdout, blocked


def assert_loopback_only(net_log: Path, url: str) -> None:
    """Every TCP connection Chromium tried was to 127.0.0.1, it sent no UDP datagram at all
    (no DNS, no QUIC), and every request the page made was to the app."""
    log = json.loads(net_log.read_text())
    names = {number: name for name, number in log["constants"]["logEventTypes"].items()}
    origin = "/".join(url.split("/")[:3])
    connects = fetches = 0
    for event in log["events"]:
        kind, params = names[event["type"]], event.get("params", {})
        if kind == "TCP_CONNECT_ATTEMPT" and "address" in params:  # its end carries none
            assert params["address"].startswith("127.0.0.1:"), params
            connects += 1
        assert kind != "UDP_BYTES_SENT", params
        if kind == "URL_REQUEST_START_JOB" and params.get("initiator") == origin:
            assert params["url"].startswith(f"{origin}/"), params
            fetches += 1
    assert connects, "the log shows no connection at all: it cannot prove anything"
    assert fetches, "the page loaded nothing"


def rendered(
    chromium: str, url: str, workdir: Path, operations: Callable[[str], Operations], want: set[Any]
) -> Operations:
    """The operations the page shows once rendered (tried again when a run came up short)."""
    shown: Operations = set()
    for attempt in range(ATTEMPTS):
        dom, blocked = browse(chromium, url, workdir / f"dom-{attempt}", "--dump-dom")
        (workdir / f"dom-{attempt}.html").write_text(dom)
        assert blocked <= BLOCKED[urlsplit(url).path], blocked
        shown = operations(dom)
        if shown == want:
            break
    return shown


def distinct_bytes(png: bytes) -> int:
    """How many byte values the image data holds: a blank page has a handful."""
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    data, at = b"", 8
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        if png[at + 4 : at + 8] == b"IDAT":
            data += png[at + 8 : at + 8 + length]
        at += 12 + length
    return len(set(zlib.decompress(data)))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_every_operation_offline(
    chromium: str, served_apps: Callable[..., ServedApp], tmp_path: Path, page: str
) -> None:
    app = served_apps()
    spec = httpx.get(f"{app.url}/openapi.json").json()
    want = {(m, path) for path, item in spec["paths"].items() for m in item if m in METHODS}
    assert want >= KNOWN

    shown = rendered(chromium, f"{app.url}{page}", tmp_path, PAGES[page], want)
    assert shown == want, f"missing {want - shown}, unexpected {shown - want} (DOM in {tmp_path})"

    screenshot = tmp_path / f"{page.strip('/')}.png"
    browse(chromium, f"{app.url}{page}", tmp_path / "shot", f"--screenshot={screenshot}")
    assert distinct_bytes(screenshot.read_bytes()) > 100, screenshot
