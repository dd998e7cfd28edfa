"""Rate-limit errors. The HTTP edge renders QuotaExceeded with the IANA problem type
`https://iana.org/assignments/http-problem-types#quota-exceeded` and the verdicts it carries as
`RateLimit-Policy`/`RateLimit` headers (app/http/ratelimit.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.errors import ServiceUnavailable, TooManyRequests

if TYPE_CHECKING:
    from app.ratelimit.limiter import Verdict


class QuotaExceeded(TooManyRequests):
    code = "rate_limit.exceeded"
    title = "Quota exceeded"

    def __init__(self, verdicts: tuple[Verdict, ...]) -> None:
        refused = [v for v in verdicts if not v.allowed]
        names = ", ".join(v.quota.name for v in refused)
        super().__init__(
            f"quota exceeded ({names}); retry when the window frees up",
            retry_after=max(v.reset_seconds for v in refused),
        )
        self.verdicts = verdicts


class StoreUnavailable(ServiceUnavailable):
    """An operator's change of the counts (an unlock) could not reach the store."""

    code = "rate_limit.store_unavailable"
    title = "Rate-limit store unavailable"
