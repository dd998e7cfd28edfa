"""Domain errors with stable codes; mapped to HTTP once, in app/http/errors.py."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose.

    `code` is part of the public contract (clients switch on it); the kind of error is the base
    class below (NotFound, Conflict, ...), which the HTTP edge maps to a status in one place
    (app/http/errors.py); `retry_after` (seconds) is a hint sent as `Retry-After` when set.
    """

    code = "error"
    title = "Bad request"
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if retry_after is not None:
            self.retry_after = retry_after


class InvalidRequest(DomainError):
    """The request cannot be understood as sent (a malformed token or cursor)."""

    code = "request.bad"
    title = "Bad request"


class Unprocessable(DomainError):
    """Well-formed, but the values break a rule."""

    code = "request.unprocessable"
    title = "Unprocessable request"


class PaymentRequired(DomainError):
    """The payment was refused (a decline): the client must change something to succeed."""

    code = "payment.required"
    title = "Payment required"


class NotFound(DomainError):
    code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    title = "Conflict"


class Gone(DomainError):
    """What was asked for existed and is withdrawn for good (a sunset API version or route)."""

    code = "gone"
    title = "Gone"


class PreconditionRequired(DomainError):
    code = "precondition.required"
    title = "Precondition required"


class PreconditionFailed(DomainError):
    code = "precondition.failed"
    title = "Precondition failed"


class Unauthenticated(DomainError):
    code = "auth.unauthenticated"
    title = "Unauthenticated"


class Forbidden(DomainError):
    code = "auth.forbidden"
    title = "Forbidden"


class RequestTimeout(DomainError):
    """The client did not send its request in time."""

    code = "request.timeout"
    title = "Request timeout"


class PayloadTooLarge(DomainError):
    code = "request.too_large"
    title = "Payload too large"


class TooManyRequests(DomainError):
    """Refused for now; `retry_after` says when to try again."""

    code = "request.too_many"
    title = "Too many requests"
    retry_after = 1


class BadGateway(DomainError):
    """An upstream this request depends on answered, but not usably (not an outage)."""

    code = "upstream.bad_gateway"
    title = "Bad gateway"


class ServiceUnavailable(DomainError):
    code = "service.unavailable"
    title = "Service unavailable"
    retry_after = 1


class DatabaseUnavailable(ServiceUnavailable):
    """No server that could serve the request is available: its breaker is not closed, or the
    request's own attempt hit a connection failure."""

    code = "database.unavailable"
    title = "Database unavailable"


class DatabaseBusy(ServiceUnavailable):
    """A pool checkout waited past `pool.timeout`: local back-pressure, not an outage."""

    code = "database.busy"
    title = "Database busy"


class TenantDatabaseBusy(ServiceUnavailable):
    """The tenant already holds every database connection its policy allows in this process
    (`db_concurrency_primary` / `_replica`) and none came free within `tenancy.db_wait_seconds`:
    fairness back-pressure on one tenant, not an outage and not pool exhaustion."""

    code = "database.tenant_busy"
    title = "Too many concurrent database requests for this tenant"
