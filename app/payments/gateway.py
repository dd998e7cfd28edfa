"""The payment provider, as the orders saga sees it: authorize / capture / void / refund, each
idempotent on the caller's key.

`HttpPaymentGateway` talks to any provider with the sandbox's HTTP shape (app/payments/sandbox.py)
through a `ProviderTransport` (httpx to `payments.url`, or the in-process sandbox called
directly when none is configured), bounded by `payments.timeout_seconds` and guarded by
pybreaker breakers: one per provider account (the tenant's account at the provider; see
app/payments/breakers.py) and one provider-wide, opened only when several accounts fail within
a window and none succeeds in it. Only timeouts, connection errors and 5xx count as failures: a
decline (402) or another 4xx proves the provider is up.
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
from app.payments.breakers import PaymentBreakers, ProviderAccount, ProviderFailure, open_for
from app.payments.sandbox import SandboxProvider
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
    """Every call names the provider account it is made for (breakers are per account)."""

    async def authorize(
        self, account: ProviderAccount, idempotency_key: str, token: str, amount: Money
    ) -> str:
        """Hold `amount` on the payment method; returns the authorization id."""
        ...

    async def capture(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None: ...

    async def void(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None: ...

    async def refund(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None: ...


class PaymentObserver(Protocol):
    """Where provider calls are reported (the container passes the process's metrics)."""

    def payment_call(self, operation: str, result: str, seconds: float) -> None:
        """`result`: ok, declined, rejected, failed (timeout, connection error, 5xx)."""
        ...


class ProviderTransport(Protocol):
    """How a provider call travels: `post` returns the status and the decoded JSON reply (None
    when the body is not JSON) and raises ProviderFailure when no answer arrives."""

    async def post(
        self, path: str, idempotency_key: str, body: dict[str, Any]
    ) -> tuple[int, Any]: ...

    async def aclose(self) -> None: ...


class HttpTransport:
    """A provider served over HTTP (`payments.url`)."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def post(self, path: str, idempotency_key: str, body: dict[str, Any]) -> tuple[int, Any]:
        try:
            response = await self._client.post(
                path, json=body, headers={"Idempotency-Key": idempotency_key}
            )
        except httpx.TransportError as error:
            raise ProviderFailure(f"payment provider: {type(error).__name__}") from error
        if response.status_code >= 300:
            return response.status_code, None
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None

    async def aclose(self) -> None:
        await self._client.aclose()


class SandboxTransport:
    """The in-process sandbox, called directly: no HTTP client or server between the saga and a
    fake provider (their cost is not the service's; a served sandbox measures it)."""

    def __init__(self, sandbox: SandboxProvider) -> None:
        self._sandbox = sandbox

    async def post(self, path: str, idempotency_key: str, body: dict[str, Any]) -> tuple[int, Any]:
        return await self._sandbox.handle(path, idempotency_key, body)

    async def aclose(self) -> None:
        pass


class HttpPaymentGateway:
    def __init__(
        self,
        transport: ProviderTransport,
        settings: PaymentSettings,
        observer: PaymentObserver | None = None,
    ) -> None:
        self._transport = transport
        self._timeout = settings.timeout_seconds
        self.breakers = PaymentBreakers(settings)
        self._observer = observer

    @property
    def breaker_state(self) -> str:
        """The provider-wide breaker."""
        return str(self.breakers.provider.current_state)

    async def authorize(
        self, account: ProviderAccount, idempotency_key: str, token: str, amount: Money
    ) -> str:
        body = {"token": token, "amount": amount.amount, "currency": amount.currency}
        reply = await self._post(account, "authorize", "/authorizations", idempotency_key, body)
        authorization_id = reply.get("id")
        if not isinstance(authorization_id, str) or not authorization_id:
            raise PaymentUnavailable("the payment provider's reply has no authorization id")
        return authorization_id

    async def capture(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None:
        path = f"/authorizations/{authorization_id}/capture"
        await self._post(account, "capture", path, idempotency_key)

    async def void(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None:
        path = f"/authorizations/{authorization_id}/void"
        await self._post(account, "void", path, idempotency_key)

    async def refund(
        self, account: ProviderAccount, idempotency_key: str, authorization_id: str
    ) -> None:
        path = f"/authorizations/{authorization_id}/refund"
        await self._post(account, "refund", path, idempotency_key)

    async def _post(
        self,
        account: ProviderAccount,
        operation: str,
        path: str,
        idempotency_key: str,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        provider = self.breakers.provider
        breaker = self.breakers.for_account(account)
        # Fail fast on an open breaker before entering either: a refusal by one must not count
        # as a success of the other (pybreaker counts excluded errors as successes). No await
        # separates these checks from the `calling()` blocks, so the states cannot move between.
        # The provider-wide check also keeps accounts that failed recently off its trial call.
        for wait in (self.breakers.refuses(account), open_for(breaker)):
            if wait:
                raise PaymentUnavailable(
                    "the payment provider is unavailable", retry_after=_seconds(wait)
                )
        started = time.perf_counter()
        try:
            with provider.calling(), breaker.calling():
                status, reply = await self._send(path, idempotency_key, body)
        except pybreaker.CircuitBreakerError:  # only if a trial call just failed
            self._observe(operation, "failed", started)
            self.breakers.failed(account)
            raise PaymentUnavailable(
                "the payment provider is unavailable", retry_after=self._retry_after(breaker)
            ) from None
        except ProviderFailure as error:
            self._observe(operation, "failed", started)
            self.breakers.failed(account)
            raise PaymentUnavailable(str(error), retry_after=self._retry_after(breaker)) from error
        self.breakers.succeeded(account)
        if status == 402:
            self._observe(operation, "declined", started)
            raise PaymentDeclined("the payment was declined")
        if status >= 400:
            self._observe(operation, "rejected", started)
            raise PaymentRejected(f"the provider refused: {status}")
        self._observe(operation, "ok", started)
        if not isinstance(reply, dict):
            raise PaymentUnavailable("the payment provider's reply is not a JSON object")
        return reply

    async def _send(
        self, path: str, idempotency_key: str, body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        try:
            # asyncio's timeout also bounds the in-process transport, which has none of its own.
            async with asyncio.timeout(self._timeout):
                status, reply = await self._transport.post(path, idempotency_key, body or {})
        except TimeoutError as error:
            raise ProviderFailure(f"payment provider: {type(error).__name__}") from error
        if status >= 500:
            raise ProviderFailure(f"payment provider answered {status}")
        return status, reply

    def _observe(self, operation: str, result: str, started: float) -> None:
        if self._observer is not None:
            self._observer.payment_call(operation, result, time.perf_counter() - started)

    def _retry_after(self, breaker: Any) -> int:
        return _seconds(max(open_for(self.breakers.provider), open_for(breaker)))


def _seconds(wait: float) -> int:
    return max(1, int(wait + 0.999))


def open_provider_transport(
    settings: PaymentSettings, sandbox: SandboxProvider
) -> ProviderTransport:
    """The provider at `payments.url`, or the in-process sandbox when none is configured."""
    if settings.url:
        client = httpx.AsyncClient(base_url=settings.url, timeout=settings.timeout_seconds)
        return HttpTransport(client)
    return SandboxTransport(sandbox)


async def provider_transport_lifecycle(transport: ProviderTransport) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await transport.aclose()
