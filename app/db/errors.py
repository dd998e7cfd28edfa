"""Which database exceptions mean "this server is unavailable" (breaker failures).

Only connection errors, connect/command timeouts and server-unavailable SQLSTATEs count. Never an
integrity error, a domain error, a pool-checkout timeout (local back-pressure) or a cancellation.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

# 08: connection exception, 28: no such role or a wrong password, 3D000: no such database,
# 57P03: cannot connect now, 53300: too many connections: a session could not be opened.
_CONNECT_SQLSTATES = ("08", "28", "3D000", "57P03", "53300")

# 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now; 53300: too many
# connections (the server refuses new sessions).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says the server (not the query, not our pool) is unavailable."""
    if isinstance(error, asyncio.CancelledError | sa_exc.TimeoutError):
        return False
    if isinstance(error, sa_exc.DBAPIError):  # SQLAlchemy's wrapper of the DBAPI's error
        if error.connection_invalidated:
            return True
        return error.orig is not None and is_unavailable(error.orig)
    if isinstance(error, sa_exc.EmulatedDBAPIException):
        # The asyncpg dialect's own DBAPI error, around asyncpg's. Raised unwrapped wherever a
        # pool connects (`engine.raw_connection()`, so every node checkout that opens a
        # connection): "the database system is shutting down", or a connection closed during
        # the handshake, arrive as this, never as a DBAPIError.
        driver = error.orig or error.__cause__
        return driver is not None and driver is not error and is_unavailable(driver)
    if isinstance(error, OSError):  # refused, reset, and TimeoutError (connect/command timeout)
        return True
    if isinstance(error, asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        # Only a closed connection; "another operation is in progress" and friends are our bugs
        # and must surface as such, not trip the breaker.
        return "closed" in str(error)
    if isinstance(error, asyncpg.PostgresError):
        state = getattr(error, "sqlstate", "") or ""
        return state.startswith(_UNAVAILABLE_SQLSTATES)
    return False


def connect_failure(error: BaseException) -> str | None:
    """The driver's reason (one line) when `error`, or an error that caused it, says a session
    could not be opened: the server cannot be reached, or refuses the role or the database.
    None for anything else (a query's error, a domain error, a pool timeout)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, asyncpg.PostgresError):
            state = getattr(current, "sqlstate", "") or ""
            return _first_line(current) if state.startswith(_CONNECT_SQLSTATES) else None
        if isinstance(current, OSError) and _raised_by_driver(current):
            return _first_line(current) or "timed out"  # refused, unknown host, timeout
        orig = (
            current.orig
            if isinstance(current, sa_exc.DBAPIError | sa_exc.EmulatedDBAPIException)
            else None
        )
        current = orig or current.__cause__ or current.__context__
    return None


def _raised_by_driver(error: BaseException) -> bool:
    """Raised in asyncpg's or SQLAlchemy's code: a connection's, not a file's, OSError."""
    frame = error.__traceback__
    while frame is not None:
        if frame.tb_frame.f_globals.get("__name__", "").startswith(("asyncpg.", "sqlalchemy.")):
            return True
        frame = frame.tb_next
    return False


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else ""
