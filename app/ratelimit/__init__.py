"""Rate limits: the `limits` library's sliding-window counter with leased quota (limiter.py),
the tenant and client-address quotas built on it (quotas.py)."""
