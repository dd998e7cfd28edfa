"""pybreaker used correctly from asyncio.

pybreaker's `CircuitBreaker.call()` holds a threading lock while the wrapped function runs, and
decorating an `async def` never counts a failure. `with breaker.calling():` only takes the lock to
check and update state; the body (our awaits) runs outside it, so it is safe on the event loop.

Requests only pass while the breaker is *closed*; in half-open only the health monitor's probe is
let through (`probe=True`), so a recovering server sees one trial call, not a stampede.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pybreaker

from app.core.errors import DatabaseUnavailable
from app.db.errors import is_unavailable
from app.settings import BreakerSettings

STATE_CODES = {pybreaker.STATE_CLOSED: 0, pybreaker.STATE_HALF_OPEN: 1, pybreaker.STATE_OPEN: 2}


class DatabaseBreaker:
    def __init__(self, name: str, settings: BreakerSettings) -> None:
        self.name = name
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=settings.fail_max,
            reset_timeout=settings.reset_timeout_seconds,
            success_threshold=settings.success_threshold,
            # Excluded exceptions count as successes: they prove the server answered.
            exclude=[lambda error: not is_unavailable(error)],
            throw_new_error_on_trip=False,
            name=name,
        )

    @property
    def state(self) -> str:
        return str(self._breaker.current_state)

    @property
    def is_closed(self) -> bool:
        return self.state == pybreaker.STATE_CLOSED

    @property
    def fail_counter(self) -> int:
        return int(self._breaker.fail_counter)

    def retry_after(self) -> int:
        """Whole seconds until the next probe may close the breaker (at least 1)."""
        opened_at = self._breaker._state_storage.opened_at
        if opened_at is None:
            return 1
        remaining = opened_at.timestamp() + self._breaker.reset_timeout - time.time()
        return max(1, int(remaining + 0.999))

    def check(self) -> None:
        """Fail fast unless closed: no connect attempt while open or half-open."""
        if not self.is_closed:
            raise self._unavailable()

    def record(self, error: BaseException | None) -> None:
        """Tell the breaker how a call ended.

        The common case (success, no failure streak) costs only the counter read: pybreaker is
        entered only to count an unavailability failure (which may open it) or to end a streak.
        """
        if not self.is_closed:
            return  # open or half-open: only the monitor's probe moves the state now
        if error is None:
            if self._breaker.fail_counter:
                with self._breaker.calling():
                    pass
        elif is_unavailable(error):
            with suppress(type(error)), self._breaker.calling():
                raise error

    @contextmanager
    def probe(self) -> Iterator[None]:
        """The health monitor's trial call: let through when closed, or when the reset timeout
        has passed (open -> half-open; success closes, failure reopens)."""
        with self._translated(), self._breaker.calling():
            yield

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except pybreaker.CircuitBreakerError as error:
            raise self._unavailable() from error

    def _unavailable(self) -> DatabaseUnavailable:
        return DatabaseUnavailable(
            f"database {self.name} is unavailable", retry_after=self.retry_after()
        )
