"""`/docs` (Swagger UI) and `/redoc` (ReDoc), with their JS/CSS served by the app itself from the
files the `fastapi-offline` package ships (so the pages work without internet and a wheel
install needs nothing else; docs/decisions.md says why that package). Each page carries a
Content-Security-Policy that allows its assets from 'self', its inline code by hash only, and
nothing else may run, frame it, or be fetched from it."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from importlib.metadata import version
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

_INLINE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)
ASSETS_PACKAGE = "fastapi-offline"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}
# The asset URLs carry the package version, so a file behind a URL never changes.
_FOREVER = "public, max-age=31536000, immutable"


def assets_directory() -> Path:
    """Where `fastapi-offline` keeps swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js
    and favicon.png (package data, no code of it runs)."""
    return Path(str(files("fastapi_offline") / "static"))


class _Assets(StaticFiles):
    """The packaged files with fixed content types (not the machine's mime.types) and a cache
    lifetime of a year."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        kind = _CONTENT_TYPES.get(Path(full_path).suffix)
        if kind is not None:
            response.headers["content-type"] = kind
        response.headers["cache-control"] = _FOREVER
        return response


def _sources(html: str, tag: str, *also: str) -> str:
    """'self' and the hash of each inline `tag` (script or style) of the page and of `also`."""
    bodies = [body for kind, body in _INLINE.findall(html) if kind == tag] + list(also)
    return " ".join(
        ["'self'"]
        + [
            "'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
            for b in bodies
        ]
    )


def _page(page: HTMLResponse, styles: tuple[str, ...] = (), extra: str = "") -> HTMLResponse:
    html = bytes(page.body).decode()
    policy = (
        f"default-src 'none'; script-src {_sources(html, 'script')};"
        f" style-src {_sources(html, 'style', *styles)}; img-src 'self' data:; connect-src 'self';"
        f"{extra} frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def pages(title: str, openapi_url: str, assets: str) -> dict[str, HTMLResponse]:
    """The two pages by path, each built once (the page is the same for every request)."""
    icon = f"{assets}/favicon.png"
    swagger = get_swagger_ui_html(
        openapi_url=openapi_url,
        title=f"{title} - API docs",
        swagger_js_url=f"{assets}/swagger-ui-bundle.js",
        swagger_css_url=f"{assets}/swagger-ui.css",
        swagger_favicon_url=icon,
    )
    redoc = get_redoc_html(
        openapi_url=openapi_url,
        title=f"{title} - API reference",
        redoc_js_url=f"{assets}/redoc.standalone.js",
        redoc_favicon_url=icon,
        with_google_fonts=False,
    )
    # ReDoc styles itself with styled-components: an empty <style> element it then fills through
    # the CSSOM (not subject to the policy), so the empty text's hash is all it needs. The CSS
    # of its bundled perfect-scrollbar comes as an inline <style> we do not allow (ReDoc renders
    # without it; its scrollbars lose their custom look). Its search runs in a Web Worker made
    # from a blob: URL: worker-src allows that and no other worker. Its "API docs by Redocly"
    # logo is on Redocly's CDN: img-src blocks it, and ReDoc hides the image when it fails.
    # tests/integration/test_docs_browser.py lists what the policy blocks, and fails on more.
    return {
        "/docs": _page(swagger),
        "/redoc": _page(redoc, styles=("",), extra=" worker-src blob:;"),
    }


def install_docs(app: FastAPI) -> None:
    """`/docs`, `/redoc` and their assets under `/docs/assets/<package version>/`."""
    assert app.openapi_url is not None
    assets = f"/docs/assets/{version(ASSETS_PACKAGE)}"
    for path, page in pages(app.title, app.openapi_url, assets).items():

        async def serve(_: Request, page: HTMLResponse = page) -> HTMLResponse:
            return page

        app.add_route(path, serve, include_in_schema=False)
    app.mount(assets, _Assets(directory=assets_directory()), name="docs-assets")
