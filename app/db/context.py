"""Per-request database context, carried in a contextvar set by the HTTP middleware.

Services stay framework-free: the unit of work reads the caller's read preference from here and
records the consistency token of its commit here; the edge turns both into headers. Outside a
request (CLI, worker) the defaults apply.
"""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, field

from app.db.routing import ReadPreference


@dataclass
class DbRequestContext:
    preference: ReadPreference = field(default_factory=ReadPreference)
    commit_lsn: int | None = None


_current: ContextVar[DbRequestContext | None] = ContextVar("db_request_context", default=None)


def current() -> DbRequestContext | None:
    return _current.get()


def bind(context: DbRequestContext) -> Token[DbRequestContext | None]:
    return _current.set(context)


def unbind(token: Token[DbRequestContext | None]) -> None:
    _current.reset(token)
