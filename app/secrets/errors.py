"""Secrets' domain errors. A server-side key problem is a 503 with a stable code, never a 500
and never garbage: the operator fixes `secrets.keys` and the same request then succeeds."""

from __future__ import annotations

from app.core.errors import NotFound, ServiceUnavailable


class SecretsNotConfigured(ServiceUnavailable):
    code = "secrets.not_configured"
    title = "Secrets not configured"
    retry_after = 60


class SecretUndecryptable(ServiceUnavailable):
    """A stored secret was written under a key that is no longer in `secrets.keys` (or the
    stored value was altered): no configured key can decrypt it."""

    code = "secrets.undecryptable"
    title = "Secret undecryptable"
    retry_after = 60


class WebhookSecretNotFound(NotFound):
    code = "secrets.not_found"
    title = "No webhook secret"
