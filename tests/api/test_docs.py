"""/docs and /redoc work offline: every asset the pages reference (and the OpenAPI document
they load) comes from the app itself, with the right content type and a long cache life, under
a Content-Security-Policy that names no other origin. A browser check: tests/integration/
test_docs_browser.py."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import Harness

PAGES = ("/docs", "/redoc")
# What each page must reference, by the kind of response it gets.
EXPECTED = {
    "/docs": {"text/javascript", "text/css", "image/png", "application/json"},
    "/redoc": {"text/javascript", "image/png", "application/json"},
}


class _References(HTMLParser):
    """Every src/href/spec-url in a page, plus the `url:` Swagger UI's inline script loads."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("src", "href", "spec-url") and v]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


def references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", PAGES)
async def test_every_asset_of_the_page_comes_from_the_app(harness: Harness, page: str) -> None:
    response = await harness.client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "//" not in response.text  # no absolute or scheme-relative URL at all
    urls = references(response.text)
    assert len(urls) >= 3, urls
    kinds = set()
    for url in urls:
        assert url.startswith("/"), url
        assert urlsplit(url).netloc == "", url
        asset = await harness.client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"].split(";")[0]
        kinds.add(kind)
        assert asset.content, url
        if url != "/openapi.json":
            assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
            assert asset.headers["x-content-type-options"] == "nosniff"
    assert kinds == EXPECTED[page]


@pytest.mark.parametrize("page", PAGES)
async def test_the_policy_names_no_other_origin(harness: Harness, page: str) -> None:
    policy = (await harness.client.get(page)).headers["content-security-policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";") if " " in d.strip())
    assert directives["default-src"] == "'none'"
    assert directives["script-src"].startswith("'self'")
    assert ("'sha256-" in directives["script-src"]) == (page == "/docs")  # Swagger's inline init
    assert directives["frame-ancestors"] == "'none'"
    for directive, sources in directives.items():
        for source in sources.split():
            assert source in ("'self'", "'none'", "data:", "blob:") or source.startswith(
                "'sha256-"
            ), f"{directive} allows {source}"
    assert ("worker-src" in directives) == (page == "/redoc")  # ReDoc's search worker only


async def test_assets_are_only_the_packaged_files(harness: Harness) -> None:
    html = (await harness.client.get("/docs")).text
    script = next(url for url in references(html) if url.endswith(".js"))
    folder = script.rsplit("/", 1)[0]
    for path in (f"{folder}/", f"{folder}/..%2f..%2fdocs.py", f"{folder}/nope.js"):
        assert (await harness.client.get(path)).status_code == 404, path


async def test_docs_assets_are_off_with_the_docs(make_harness: Any, harness: Harness) -> None:
    urls = references((await harness.client.get("/docs")).text)
    off = await make_harness(server={"docs_enabled": False})
    for url in [*PAGES, *urls]:
        assert (await off.client.get(url)).status_code == 404, url
