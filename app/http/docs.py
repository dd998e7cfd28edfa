"""The Swagger UI page, with a Content-Security-Policy that allows exactly its own inline script
(by hash) and its assets' origin; nothing else may run, frame it, or be fetched from it."""

from __future__ import annotations

import base64
import hashlib
import re

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.requests import Request
from starlette.responses import HTMLResponse

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)
_ASSETS = "https://cdn.jsdelivr.net"


def docs_page(title: str, openapi_url: str) -> HTMLResponse:
    page = get_swagger_ui_html(openapi_url=openapi_url, title=title)
    html = bytes(page.body).decode()
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in _INLINE_SCRIPT.findall(html)
    )
    policy = (
        f"default-src 'none'; script-src {_ASSETS} {hashes}; style-src {_ASSETS};"
        " img-src 'self' data: https://fastapi.tiangolo.com; connect-src 'self';"
        " frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": policy})


def install_docs(app: FastAPI) -> None:
    """`/docs`, built once (the page is the same for every request)."""
    assert app.openapi_url is not None
    page = docs_page(f"{app.title} - API docs", app.openapi_url)

    async def docs(_: Request) -> HTMLResponse:
        return page

    app.add_route("/docs", docs, include_in_schema=False)
