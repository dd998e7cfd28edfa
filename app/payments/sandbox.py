"""The sandbox payment provider: a small ASGI app with the provider's HTTP shape.

In-process by default (no `payments.url`: the gateway calls `handle` directly, with no HTTP in
between), or served by `storefront sandbox-gateway` (the same `handle` behind a Starlette app).
Every operation is idempotent on the `Idempotency-Key` header (the same key replays the first
answer).
Test tokens: `tok_ok` authorizes, `tok_declined` is declined (402), `tok_invalid` is refused as
malformed (400), `tok_timeout` never answers in time, `tok_error` fails (500).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
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


Reply = tuple[int, dict[str, Any]]


class SandboxProvider:
    def __init__(self) -> None:
        self.authorizations: dict[str, dict[str, Any]] = {}
        self._replies: dict[str, Reply] = {}
        self.app = Starlette(routes=[Route("/{path:path}", self._serve, methods=["POST"])])

    async def handle(self, path: str, idempotency_key: str, body: dict[str, Any]) -> Reply:
        """One provider call: `POST /authorizations` or `POST /authorizations/{id}/{operation}`.
        The same path and key replay the first answer (failures are not answers: they run
        again)."""
        parts = path.strip("/").split("/")
        if parts == ["authorizations"]:
            token = body.get("token")
            if token == "tok_timeout":
                await asyncio.sleep(3600)
            if token == "tok_error":
                return 500, {"error": "provider_error"}
            return self._once(path, idempotency_key, lambda: self._authorize(token, body))
        if len(parts) == 3 and parts[0] == "authorizations":
            return self._once(path, idempotency_key, lambda: self._operate(parts[1], parts[2]))
        return 404, {"error": "not_found"}

    def _authorize(self, token: Any, body: dict[str, Any]) -> Reply:
        if token == "tok_invalid":
            return 400, {"error": "invalid_token"}
        if token != "tok_ok":
            return 402, {"error": "card_declined"}
        authorization_id = "auth_" + secrets.token_hex(8)
        authorization = {
            "id": authorization_id,
            "status": "authorized",
            "amount": body.get("amount"),
            "currency": body.get("currency"),
        }
        self.authorizations[authorization_id] = authorization
        return 201, authorization

    def _operate(self, authorization_id: str, operation: str) -> Reply:
        authorization = self.authorizations.get(authorization_id)
        if operation not in _TRANSITIONS or authorization is None:
            return 404, {"error": "not_found"}
        needed, result = _TRANSITIONS[operation]
        if authorization["status"] != needed:
            return 409, {"error": f"authorization is {authorization['status']}"}
        authorization["status"] = result
        return 200, dict(authorization)

    def _once(self, path: str, idempotency_key: str, run: Callable[[], Reply]) -> Reply:
        key = f"{path}:{idempotency_key}"
        reply = self._replies.get(key) or run()
        if reply[0] < 500:
            self._replies[key] = reply
        return reply

    async def _serve(self, request: Request) -> JSONResponse:
        try:
            body = await request.json() if await request.body() else {}
        except ValueError:
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        if not isinstance(body, dict):
            return JSONResponse({"error": "invalid_json"}, status_code=400)
        key = request.headers.get("idempotency-key", "")
        status, reply = await self.handle(request.url.path, key, body)
        return JSONResponse(reply, status_code=status)
