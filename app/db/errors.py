"""Which database exceptions mean "this server is unavailable" (breaker failures).

Only connection errors, connect/command timeouts and server-unavailable SQLSTATEs count. Never an
integrity error, a domain error, a pool-checkout timeout (local back-pressure) or a cancellation.
"""

from __future__ import annotations

import asyncio

import asyncpg
from sqlalchemy import exc as sa_exc

# 08: connection exception; 57P01-03: admin/crash shutdown, cannot connect now; 53300: too many
# connections (the server refuses new sessions).
_UNAVAILABLE_SQLSTATES = ("08", "57P01", "57P02", "57P03", "53300")


def is_unavailable(error: BaseException) -> bool:
    """True when `error` says the server (not the query, not our pool) is unavailable."""
    if isinstance(error, asyncio.CancelledError | sa_exc.TimeoutError):
        return False
    if isinstance(error, sa_exc.DBAPIError):
        if error.connection_invalidated:
            return True
        inner = error.orig.__cause__ if error.orig is not None else None
        return inner is not None and is_unavailable(inner)
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
