"""The sandbox payment provider: a small ASGI app with the provider's HTTP shape.

In-process by default (no `payments.url`), or served by `storefront sandbox-gateway`. Every
operation is idempotent on the `Idempotency-Key` header (the same key replays the first answer).
Test tokens: `tok_ok` authorizes, `tok_declined` is declined (402), `tok_invalid` is refused as
malformed (400), `tok_timeout` never answers in time, `tok_error` fails (500).
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

# operation -> (state it needs, state it leaves)
_TRANSITIONS = {
    "capture": ("authorized", "captured"),
    "void": ("authorized", "voided"),
    "refund": ("captured", "refunded"),
}


class SandboxProvider:
    def __init__(self) -> None:
        self.authorizations: dict[str, dict[str, Any]] = {}
        self._replies: dict[str, tuple[int, dict[str, Any]]] = {}
        self.app = Starlette(
            routes=[
                Route("/authorizations", self._authorize, methods=["POST"]),
                Route("/authorizations/{id}/{operation}", self._operate, methods=["POST"]),
            ]
        )

    async def _authorize(self, request: Request) -> JSONResponse:
        body = await request.json()
        token = body.get("token")
        if token == "tok_timeout":
            await asyncio.sleep(3600)
        if token == "tok_error":
            return JSONResponse({"error": "provider_error"}, status_code=500)

        def run() -> tuple[int, dict[str, Any]]:
            if token == "tok_invalid":
                return 400, {"error": "invalid_token"}
            if token != "tok_ok":
                return 402, {"error": "card_declined"}
            authorization = {
                "id": "auth_" + secrets.token_hex(8),
                "status": "authorized",
                "amount": body.get("amount"),
                "currency": body.get("currency"),
            }
            self.authorizations[authorization["id"]] = authorization
            return 201, authorization

        return self._once(request, run)

    async def _operate(self, request: Request) -> JSONResponse:
        operation = request.path_params["operation"]
        authorization = self.authorizations.get(request.path_params["id"])

        def run() -> tuple[int, dict[str, Any]]:
            if operation not in _TRANSITIONS or authorization is None:
                return 404, {"error": "not_found"}
            needed, result = _TRANSITIONS[operation]
            if authorization["status"] != needed:
                return 409, {"error": f"authorization is {authorization['status']}"}
            authorization["status"] = result
            return 200, dict(authorization)

        return self._once(request, run)

    def _once(self, request: Request, run: Any) -> JSONResponse:
        key = f"{request.url.path}:{request.headers.get('idempotency-key', '')}"
        reply = self._replies.get(key) or run()
        if reply[0] < 500:  # failures are not answers: a retry runs again
            self._replies[key] = reply
        return JSONResponse(reply[1], status_code=reply[0])
