"""Per-tenant traffic policy: plans, overrides, emergency overrides (issue 9)."""
