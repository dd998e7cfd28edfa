"""Domain errors with stable codes; mapped to HTTP once, in app/http/errors.py."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error a use case raises on purpose.

    `code` is part of the public contract (clients switch on it); `status` is the HTTP status the
    edge maps it to; `retry_after` (seconds) is sent as `Retry-After` when set.
    """

    code = "error"
    status = 400
    title = "Bad request"
    retry_after: int | None = None

    def __init__(self, detail: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        if retry_after is not None:
            self.retry_after = retry_after


class NotFound(DomainError):
    code = "not_found"
    status = 404
    title = "Not found"


class Conflict(DomainError):
    code = "conflict"
    status = 409
    title = "Conflict"


class PreconditionRequired(DomainError):
    code = "precondition.required"
    status = 428
    title = "Precondition required"


class PreconditionFailed(DomainError):
    code = "precondition.failed"
    status = 412
    title = "Precondition failed"


class Unauthenticated(DomainError):
    code = "auth.unauthenticated"
    status = 401
    title = "Unauthenticated"


class Forbidden(DomainError):
    code = "auth.forbidden"
    status = 403
    title = "Forbidden"


class ServiceUnavailable(DomainError):
    code = "service.unavailable"
    status = 503
    title = "Service unavailable"
    retry_after = 1


class DatabaseUnavailable(ServiceUnavailable):
    """The breaker of every engine that could serve the request is open (or half-open)."""

    code = "database.unavailable"
    title = "Database unavailable"


class DatabaseBusy(ServiceUnavailable):
    """A pool checkout waited past `pool.timeout`: local back-pressure, not an outage."""

    code = "database.busy"
    title = "Database busy"
