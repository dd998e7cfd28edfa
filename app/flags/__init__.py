"""Feature flags: per-tenant targeting and stable percentage rollout (see rules.py)."""
