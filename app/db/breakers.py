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

    @contextmanager
    def guard(self, *, probe: bool = False) -> Iterator[None]:
        """Run the body as one guarded call; fail fast unless closed (or this is the probe).

        A request on a closed breaker with no failures on record costs only the state check:
        pybreaker is entered only to record a failure, to clear a failure streak, or for the
        monitor's probe (which drives open -> half-open -> closed).
        """
        if probe:
            with self._translated(), self._breaker.calling():
                yield
            return
        if not self.is_closed:
            raise self._unavailable()
        try:
            yield
        except BaseException as error:
            if is_unavailable(error):
                with suppress(type(error)), self._breaker.calling():
                    raise error  # counted by pybreaker as a failure (and may open it)
            raise
        if self._breaker.fail_counter:
            with self._breaker.calling():
                pass  # a success ends the failure streak

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
