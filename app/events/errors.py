"""How a consumer's failure to apply an event is classified (the relay decides from this whether
to retry, back off, or dead-letter an event of the in-process bus)."""

from __future__ import annotations

import asyncpg
from sqlalchemy import exc as sa_exc

from app.core.errors import Conflict, NotFound, ServiceUnavailable
from app.db.errors import is_unavailable
from app.events.repository import Event

# Worth retrying however often: serialization failure, deadlock, lock not available, statement
# timeout / cancelled, out of memory / disk / connections (classes 53 and 08 via is_unavailable).
_TRANSIENT_SQLSTATES = ("40001", "40P01", "55P03", "57014", "53")


class PermanentEventFailure(Exception):
    """A handler raises (a subclass of) this when retrying the event can never succeed: the
    event is dead-lettered at once."""


class HandlerFailed(Exception):
    """The in-process bus: `handler_name` raised `cause` for `event` (the relay classifies it)."""

    def __init__(self, event: Event, handler_name: str, cause: Exception) -> None:
        super().__init__(f"{handler_name}: {cause!r}")
        self.event = event
        self.handler_name = handler_name
        self.cause = cause

    @property
    def permanent(self) -> bool:
        return isinstance(self.cause, PermanentEventFailure)

    @property
    def transient(self) -> bool:
        return is_transient(self.cause)


def is_transient(error: BaseException) -> bool:
    """True for a failure of the database (or another dependency), not of the event: such an
    event is retried with backoff for as long as the outage lasts, never dead-lettered."""
    if isinstance(error, ServiceUnavailable | sa_exc.TimeoutError) or is_unavailable(error):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.orig is not None:
        cause = error.orig.__cause__
        return cause is not None and is_transient(cause)
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", "") or ""
        return state.startswith(_TRANSIENT_SQLSTATES)
    return False


# `storefront events replay` (app/events/replay.py)


class UnknownProjection(NotFound):
    code = "events.unknown_projection"
    title = "Unknown projection"


class LogIncomplete(Conflict):
    code = "events.log_incomplete"
    title = "The event log no longer holds every event"


class ReplayBusy(ServiceUnavailable):
    code = "events.replay_busy"
    title = "The read model's consumer kept its lock"
