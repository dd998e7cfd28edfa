"""The payment provider, as the orders saga sees it: authorize / capture / void / refund, each
idempotent on the caller's key.

`HttpPaymentGateway` talks to any provider with the sandbox's HTTP shape (app/payments/sandbox.py)
through httpx, bounded by `payments.timeout_seconds` and guarded by a pybreaker breaker. Only
timeouts, connection errors and 5xx count as failures: a decline (402) or another 4xx proves
the provider is up.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Protocol

import httpx
import pybreaker

from app.core.errors import PaymentRequired, ServiceUnavailable, Unprocessable
from app.core.money import Money
from app.settings import PaymentSettings


class PaymentDeclined(PaymentRequired):
    code = "payment.declined"
    title = "Payment declined"


class PaymentUnavailable(ServiceUnavailable):
    code = "payment.unavailable"
    title = "Payment provider unavailable"


class PaymentRejected(Unprocessable):
    """The provider refused the operation itself (unknown authorization, wrong state)."""

    code = "payment.rejected"
    title = "Payment operation rejected"


class PaymentGateway(Protocol):
    async def authorize(self, idempotency_key: str, token: str, amount: Money) -> str:
        """Hold `amount` on the payment method; returns the authorization id."""
        ...

    async def capture(self, idempotency_key: str, authorization_id: str) -> None: ...

    async def void(self, idempotency_key: str, authorization_id: str) -> None: ...

    async def refund(self, idempotency_key: str, authorization_id: str) -> None: ...


class _ProviderFailure(Exception):
    """Counts in the breaker: the provider did not answer properly."""


class HttpPaymentGateway:
    def __init__(self, client: httpx.AsyncClient, settings: PaymentSettings) -> None:
        self._client = client
        self._timeout = settings.timeout_seconds
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=settings.breaker.fail_max,
            reset_timeout=settings.breaker.reset_timeout_seconds,
            success_threshold=settings.breaker.success_threshold,
            # Anything but a provider failure proves the provider answered (or was cancelled
            # by our own client): it must not open the breaker.
            exclude=[lambda error: not isinstance(error, _ProviderFailure)],
            throw_new_error_on_trip=False,
            name="payments",
        )

    @property
    def breaker_state(self) -> str:
        return str(self._breaker.current_state)

    async def authorize(self, idempotency_key: str, token: str, amount: Money) -> str:
        body = {"token": token, "amount": amount.amount, "currency": amount.currency}
        reply = await self._post("/authorizations", idempotency_key, body)
        authorization_id = reply.get("id")
        if not isinstance(authorization_id, str) or not authorization_id:
            raise PaymentUnavailable("the payment provider's reply has no authorization id")
        return authorization_id

    async def capture(self, idempotency_key: str, authorization_id: str) -> None:
        await self._post(f"/authorizations/{authorization_id}/capture", idempotency_key)

    async def void(self, idempotency_key: str, authorization_id: str) -> None:
        await self._post(f"/authorizations/{authorization_id}/void", idempotency_key)

    async def refund(self, idempotency_key: str, authorization_id: str) -> None:
        await self._post(f"/authorizations/{authorization_id}/refund", idempotency_key)

    async def _post(
        self, path: str, idempotency_key: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        try:
            with self._breaker.calling():
                response = await self._send(path, idempotency_key, body)
        except pybreaker.CircuitBreakerError:
            raise PaymentUnavailable(
                "the payment provider is unavailable", retry_after=self._retry_after()
            ) from None
        except _ProviderFailure as error:
            raise PaymentUnavailable(str(error), retry_after=self._retry_after()) from error
        if response.status_code == 402:
            raise PaymentDeclined("the payment was declined")
        if response.status_code >= 400:
            raise PaymentRejected(f"the provider refused: {response.status_code}")
        try:
            reply = response.json()
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise PaymentUnavailable("the payment provider's reply is not a JSON object")
        return reply

    async def _send(
        self, path: str, idempotency_key: str, body: dict[str, Any] | None
    ) -> httpx.Response:
        try:
            # asyncio's timeout also bounds the in-process transport, which ignores httpx's.
            async with asyncio.timeout(self._timeout):
                response = await self._client.post(
                    path, json=body or {}, headers={"Idempotency-Key": idempotency_key}
                )
        except (TimeoutError, httpx.TransportError) as error:
            raise _ProviderFailure(f"payment provider: {type(error).__name__}") from error
        if response.status_code >= 500:
            raise _ProviderFailure(f"payment provider answered {response.status_code}")
        return response

    def _retry_after(self) -> int:
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None or self._breaker.current_state != pybreaker.STATE_OPEN:
            return 1
        remaining = opened_at.timestamp() + self._breaker.reset_timeout - time.time()
        return max(1, int(remaining + 0.999))


def open_payment_client(settings: PaymentSettings, sandbox: Any) -> httpx.AsyncClient:
    """The provider at `payments.url`, or the in-process sandbox when none is configured."""
    if settings.url:
        return httpx.AsyncClient(base_url=settings.url, timeout=settings.timeout_seconds)
    transport = httpx.ASGITransport(app=sandbox.app)
    return httpx.AsyncClient(transport=transport, base_url="http://sandbox.invalid")


async def payment_client_lifecycle(client: httpx.AsyncClient) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await client.aclose()
