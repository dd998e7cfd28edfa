"""Typed settings: the only module that reads the environment.

Sources, lowest priority first: `config/base.yaml`, `config/<STOREFRONT_ENV>.yaml`, in the `dev`
env only `<STOREFRONT_LOCAL_DIR>/dev.env` (default `.local/dev.env` in the working directory,
written by `storefront dev up`) when it exists, environment variables (`STOREFRONT_` prefix,
`__` nesting), then files in the secrets directory (`STOREFRONT_SECRETS_DIR`, one file per
setting named like its env var, e.g. `storefront_ops__operator_token`), then init arguments.
"""

from __future__ import annotations

import ipaddress
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

CONFIG_DIR = Path(os.environ.get("STOREFRONT_CONFIG_DIR", Path(__file__).parent.parent / "config"))


def local_dir() -> Path:
    """Where the `dev` commands keep the local cluster and its files (`STOREFRONT_LOCAL_DIR`,
    default `.local`, relative to the working directory like `make run`'s)."""
    return Path(os.environ.get("STOREFRONT_LOCAL_DIR", ".local"))


def dev_env_file() -> Path:
    """`storefront dev up` writes the local cluster's settings here; the `dev` env reads it."""
    return local_dir() / "dev.env"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PoolSettings(_Section):
    size: int = Field(10, ge=1, description="Connections kept open per engine.")
    max_overflow: int = Field(10, ge=0, description="Extra connections opened under bursts.")
    timeout: float = Field(1.0, gt=0, description="Seconds a checkout may wait before 503.")
    recycle: int = Field(1800, ge=-1, description="Close connections older than this (s); -1 off.")
    pre_ping: bool = Field(False, description="Ping on every checkout (one extra round trip).")
    use_lifo: bool = Field(True, description="Reuse the most recent connection; idle ones expire.")


class ConnectSettings(_Section):
    connect_timeout: float = Field(2.0, gt=0, description="Seconds to open a connection.")
    command_timeout: float = Field(10.0, gt=0, description="Client-side timeout per statement.")
    statement_timeout_ms: int = Field(5000, ge=0, description="Server statement_timeout; 0 off.")
    application_name: str = Field("storefront", min_length=1, max_length=63)
    ssl: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] = Field(
        "prefer", description="TLS mode (libpq sslmode names); disable on loopback."
    )


class BreakerSettings(_Section):
    fail_max: int = Field(3, ge=1, description="Consecutive failures that open the breaker.")
    reset_timeout_seconds: float = Field(2.0, gt=0, description="Open time before a probe.")
    success_threshold: int = Field(1, ge=1, description="Probe successes that close it again.")


def _check_pg_url(url: str) -> str:
    if not re.match(r"^postgres(ql)?(\+asyncpg)?://", url):
        raise ValueError("must be a postgresql:// or postgresql+asyncpg:// URL")
    return url


class EndpointSettings(_Section):
    url: str = Field(description="SQLAlchemy URL of the server (application role).")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_pg_url(value)


class ReplicaSettings(EndpointSettings):
    weight: int = Field(1, ge=1, le=1000, description="Weighted round-robin share.")


class RoutingSettings(_Section):
    max_replica_lag_seconds: float = Field(5.0, ge=0)
    health_interval_seconds: float = Field(1.0, gt=0)
    stale_reads_on_primary_outage: bool = True


class DatabaseSettings(_Section):
    primary: EndpointSettings = EndpointSettings(
        url="postgresql+asyncpg://storefront_app@127.0.0.1:5432/storefront"
    )
    replicas: list[ReplicaSettings] = Field(default_factory=list)
    migration_url: str | None = Field(
        None, description="URL of the schema owner for migrations; defaults to primary.url."
    )
    pool: PoolSettings = PoolSettings()
    replica_pool: PoolSettings = PoolSettings()
    connect: ConnectSettings = ConnectSettings()
    breaker: BreakerSettings = BreakerSettings()
    routing: RoutingSettings = RoutingSettings()
    pgbouncer: bool = Field(False, description="Disable prepared-statement caches.")
    app_role: str = Field(
        "storefront_app",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="Non-owner role the application connects as (row-level security applies).",
    )

    @field_validator("migration_url")
    @classmethod
    def _migration_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_pg_url(value)

    @property
    def owner_url(self) -> str:
        return self.migration_url or self.primary.url


class OpsSettings(_Section):
    operator_token: SecretStr | None = Field(
        None, description="Bearer token for /ops/* and /metrics; unset disables them."
    )


class PasswordSettings(_Section):
    """argon2id cost (OWASP minimum: 19 MiB, 2 iterations, 1 lane)."""

    argon2_memory_kib: int = Field(19456, ge=8, description="argon2id memory cost, KiB.")
    argon2_time_cost: int = Field(2, ge=1, description="argon2id iterations.")
    argon2_parallelism: int = Field(1, ge=1, description="argon2id lanes.")


Algorithm = Literal["EdDSA", "ES256", "RS256", "HS256"]


class SigningKey(_Section):
    kid: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    algorithm: Algorithm = "EdDSA"
    key: SecretStr = Field(
        description="PEM private key (signs and verifies), PEM public key (verifies only), or"
        " for HS256 a shared secret of at least 32 bytes."
    )


class TokenSettings(_Section):
    issuer: str = Field("storefront", min_length=1)
    audience: str = Field("storefront-api", min_length=1)
    access_ttl_seconds: int = Field(900, ge=10, description="Lifetime of an access token.")
    refresh_ttl_seconds: int = Field(30 * 86400, ge=60, description="Lifetime of a refresh token.")
    leeway_seconds: int = Field(5, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat.")
    keys: list[SigningKey] = Field(
        default_factory=list,
        description="Active keys; the last one that can sign signs, all verify. Empty: an"
        " ephemeral key per process (development only).",
    )


class LockoutSettings(_Section):
    max_failures_per_account: int = Field(5, ge=1, description="Failed logins, then 429.")
    max_failures_per_ip: int = Field(20, ge=1, description="Failed logins per client IP.")
    window_seconds: int = Field(
        900, ge=1, description="Sliding counting window; a lockout lifts as it slides."
    )


class SignupLimitSettings(_Section):
    max_per_ip: int = Field(
        20,
        ge=1,
        description="Sign-up attempts (POST /v1/tenants) per client address in a window; the"
        " next one gets 429 tenant.signup_limited.",
    )
    window_seconds: int = Field(3600, ge=1, description="Counting window of sign-up attempts.")


class AuthSettings(_Section):
    signup_enabled: bool = Field(True, description="Public POST /v1/tenants; false -> 404.")
    signup_limit: SignupLimitSettings = SignupLimitSettings()
    api_key_cache_ttl_seconds: float = Field(
        30.0, ge=0, description="How long a verified API key is trusted without a lookup."
    )
    user_cache_ttl_seconds: float = Field(
        30.0, ge=0, description="How long a user's role/existence is trusted without a lookup."
    )
    api_key_rotation_grace_seconds: int = Field(
        86400, ge=0, description="How long a rotated key's old secret keeps working."
    )
    api_key_usage_flush_seconds: float = Field(
        60.0, gt=0, description="last_used_at is written in batches this often."
    )
    api_key_failures_per_ip: int = Field(
        20,
        ge=1,
        description="Failed API-key lookups per client address in a window; then that address's"
        " uncached keys get 429 auth.api_key_attempts before any lookup.",
    )
    api_key_failure_window_seconds: int = Field(
        300, ge=1, description="Counting window (and refusal length) of failed API keys."
    )
    password: PasswordSettings = PasswordSettings()
    tokens: TokenSettings = TokenSettings()
    lockout: LockoutSettings = LockoutSettings()


class RedisSettings(_Section):
    url: str | None = Field(
        None,
        description="redis:// URL shared by every process for rate limits and login lockout;"
        " null: each process counts in its own memory.",
    )


# Quotas and windows end up as integers in the RateLimit headers: Structured Fields allow 15
# digits; a trillion is far past any real quota.
MAX_QUOTA = 10**12


class AddressQuotaSettings(_Section):
    """Requests per client address to the endpoints that take no credential (sign-up, token,
    refresh), together."""

    requests_per_window: int = Field(
        60,
        ge=0,
        le=MAX_QUOTA,
        description="Requests one client address may make per window (0: none).",
    )
    window_seconds: int = Field(60, ge=1, le=MAX_QUOTA, description="Length of the window.")


class RateLimitSettings(_Section):
    """Per-tenant quotas (the tenant's policy: tenancy.defaults < plans < overrides) and
    per-address quotas, counted with the `limits` library's sliding-window counter: in Redis when
    redis.url is set (shared by every process), in process memory otherwise."""

    enabled: bool = Field(True, description="false: no quota is counted and no 429 is sent.")
    anonymous: AddressQuotaSettings = AddressQuotaSettings()
    max_lease: int = Field(
        500,
        ge=1,
        description="Most requests a process admits per hit on the store (a lease is half a"
        " lease's life at the process's rate, at most an eighth of the quota left and this;"
        " 1 = a hit per request).",
    )
    lease_seconds: float = Field(
        1.0,
        gt=0,
        description="Unused leased quota lapses after this long (and after a quarter of the"
        " window).",
    )
    redis_timeout_seconds: float = Field(
        0.25, gt=0, description="Limiter's Redis connect/read timeout; past it: fail open."
    )
    outage_seconds: float = Field(
        2.0,
        ge=0,
        description="After a Redis error the limiter admits without asking Redis for this long"
        " (fail open, counted in storefront_rate_limit_fail_open_total), then tries again.",
    )


class PaymentOutageSettings(_Section):
    """When the provider itself counts as down (the provider-wide breaker opens): only when it
    fails for (nearly) everyone, never while some account's calls succeed."""

    min_accounts: int = Field(
        3,
        ge=2,
        description="Distinct provider accounts (tenants) whose calls failed within the window"
        " that open the provider-wide breaker, provided no account succeeded within it; an"
        " account that never succeeded (in this process) counts one half.",
    )
    window_seconds: float = Field(
        30.0,
        gt=0,
        description="How far back those failures count, and how long any account's success"
        " keeps the provider-wide breaker closed.",
    )
    reset_timeout_seconds: float = Field(
        5.0, gt=0, description="Open time of the provider-wide breaker before a trial call."
    )
    success_threshold: int = Field(
        1, ge=1, description="Trial successes that close the provider-wide breaker."
    )


class PaymentSettings(_Section):
    url: str | None = Field(
        None, description="Payment provider base URL; null: the in-process sandbox provider."
    )
    timeout_seconds: float = Field(2.0, gt=0, description="Limit per provider call.")
    breaker: BreakerSettings = Field(
        BreakerSettings(fail_max=3, reset_timeout_seconds=5.0),
        description="Each provider account's (tenant's) own breaker.",
    )
    max_account_breakers: int = Field(
        10_000,
        ge=1,
        description="Account breakers kept per process (LRU; closed ones are evicted first).",
    )
    outage: PaymentOutageSettings = PaymentOutageSettings()


class DeprecationSettings(_Section):
    """A deprecated API version or route (exactly one of the two), announced with RFC 9745
    `Deprecation`, RFC 8594 `Sunset` and a `Link` to what replaces it; past `sunset_at` it
    answers 410."""

    version: str | None = Field(None, description="An API version (e.g. 2026-11-23).")
    route: str | None = Field(
        None,
        pattern=r"^(GET|POST|PUT|PATCH|DELETE) /\S*$",
        description='One route of every version: "METHOD /template" (e.g. "GET /v1/features").',
    )
    deprecated_at: datetime
    sunset_at: datetime | None = Field(None, description="Never before deprecated_at.")
    link: str = Field(
        "https://storefront.dev/docs/changelog", description="What to read and move to."
    )

    @field_validator("deprecated_at", "sunset_at")
    @classmethod
    def _in_utc(cls, moment: datetime | None) -> datetime | None:
        """Kept in UTC: the Sunset header is an HTTP-date (GMT), Deprecation unix seconds."""
        if moment is None:
            return None
        if moment.tzinfo is None:
            raise ValueError("needs a time zone (e.g. Z)")
        return moment.astimezone(UTC)

    @model_validator(mode="after")
    def _one_target_and_order(self) -> DeprecationSettings:
        if (self.version is None) == (self.route is None):
            raise ValueError("give exactly one of version and route")
        if self.sunset_at is not None and self.sunset_at < self.deprecated_at:
            raise ValueError("sunset_at must not be earlier than deprecated_at")
        if not re.fullmatch(r"[\x21-\x7e]+", self.link) or ">" in self.link:
            raise ValueError("link must be a URL of visible ASCII characters (it goes in a header)")
        return self


class ApiSettings(_Section):
    deprecations: list[DeprecationSettings] = Field(
        default_factory=list, description="Deprecated versions and routes (docs/api-versions.md)."
    )
    usage_flush_seconds: float = Field(
        10.0, gt=0, description="How often each API process writes its API version usage."
    )


class OrderSettings(_Section):
    recovery_age_seconds: float = Field(
        60.0,
        gt=0,
        description="`storefront worker` settles pending orders untouched for this long.",
    )
    recovery_interval_seconds: float = Field(
        10.0, gt=0, description="How often the worker looks for such orders and old keys."
    )


class OutboxSettings(_Section):
    batch_size: int = Field(100, ge=1, le=10_000, description="Events per relay transaction.")
    poll_interval_seconds: float = Field(
        1.0, gt=0, description="Relay poll when no NOTIFY arrives."
    )
    max_backoff_seconds: int = Field(60, ge=1, description="Longest wait between retries.")
    max_attempts: int = Field(
        5,
        ge=1,
        description="In-process bus: attempts of an event whose handler keeps failing (not for"
        " an outage) before it is dead-lettered; a permanent failure dead-letters at once.",
    )
    retention_days: int | None = Field(
        None,
        ge=1,
        description="Published events kept this long; null (the default): kept for good, the"
        " log `storefront events replay` rebuilds read models from (once the worker purged an"
        " event a read model holds, replaying that read model is refused).",
    )
    replay_batch_size: int = Field(
        500, ge=1, le=10_000, description="`events replay`: events per rebuild transaction."
    )
    replay_lock_timeout_ms: int = Field(
        2000,
        ge=1,
        description="`events replay`: how long the swap waits for the consumer's lock per"
        " attempt (5 attempts) before giving up with events.replay_busy.",
    )
    relay_in_api: bool = Field(
        False, description="Also run the relay inside each API process (no worker needed)."
    )


class BrokerSettings(_Section):
    url: str | None = Field(
        None, description="amqp:// URL of RabbitMQ; null: events go to an in-process bus."
    )
    exchange: str = Field("storefront.events", min_length=1, description="Topic exchange.")
    queue: str = Field(
        "storefront.sales_daily", min_length=1, description="The sales read model's queue."
    )


class InvalidationSettings(_Section):
    """The cross-process invalidation channel (LISTEN/NOTIFY plus a periodic re-read)."""

    resync_interval_seconds: float = Field(
        2.0,
        gt=0,
        description="Each process re-reads what changed (revocations, ...) this often: the"
        " fallback for a missed NOTIFY, and the only path behind PgBouncer.",
    )
    resync_margin_seconds: float = Field(
        30.0,
        ge=0,
        description="The re-read also covers this much before the last one: a change committed"
        " by a transaction that started earlier is not skipped.",
    )


class SecretsSettings(_Section):
    """Tenant secrets at rest (webhook signing secrets, ...), encrypted with Fernet."""

    keys: list[SecretStr] = Field(
        default_factory=list,
        description="Fernet keys (`storefront secrets keygen`): the first encrypts, every one"
        " decrypts. Rotate: put a new key first, run `storefront secrets rotate-key`, then drop"
        " the old one. Empty: storing or reading a tenant secret is 503"
        " secrets.not_configured (no ephemeral key: stored secrets outlive a process).",
    )
    rotation_batch_size: int = Field(
        100, ge=1, le=10_000, description="Secrets re-encrypted per transaction by rotate-key."
    )

    @field_validator("keys")
    @classmethod
    def _fernet_keys(cls, value: list[SecretStr]) -> list[SecretStr]:
        from app.secrets.box import check_key

        for index, key in enumerate(value):
            try:
                check_key(key.get_secret_value())
            except ValueError as error:  # the message never contains the key
                raise ValueError(f"[{index}] {error}") from None
        return value


# ID-token algorithms that may be allowed: asymmetric only. `none` is never a signature, and
# an HS* token would be checked with the client secret, which this server holds too (so could
# forge): docs/decisions.md.
SSO_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class SsoSettings(_Section):
    """OpenID Connect single sign-on for tenant staff (each tenant configures its provider)."""

    redirect_uri: str | None = Field(
        None,
        description="This server's callback as registered at every tenant's provider, exactly"
        " (https://api.example.com/v1/auth/sso/callback). Null: SSO logins are 503"
        " sso.server_not_configured. Its scheme decides the cookie's Secure flag.",
    )
    login_ttl_seconds: int = Field(
        600, ge=30, le=3600, description="How long a started login (state, nonce) stays usable."
    )
    leeway_seconds: int = Field(
        30, ge=0, le=120, description="Clock skew allowed on the ID token's exp, iat and nbf."
    )
    metadata_ttl_seconds: float = Field(
        3600.0,
        ge=0,
        description="Discovery documents and key sets are cached this long (an unknown kid"
        " refetches the key set once at any time).",
    )
    http_timeout_seconds: float = Field(
        5.0,
        gt=0,
        le=60,
        description="Deadline of each request to a provider, in total (connect, send, the"
        " whole answer): a provider that trickles its answer is cut off at it.",
    )
    max_response_bytes: int = Field(
        262144,
        ge=4096,
        le=16777216,
        description="A provider's answer (discovery document, key set, token response) larger"
        " than this is refused (502 sso.provider_error).",
    )
    max_connections: int = Field(
        100, ge=1, le=10000, description="Connections to all providers together (per process)."
    )
    max_concurrent_per_tenant: int = Field(
        4,
        ge=1,
        le=100,
        description="Requests in flight to one tenant's provider (per process); more are 503"
        " sso.provider_busy at once, so a tenant with a slow provider cannot take the pool.",
    )
    cache_entries: int = Field(
        1000,
        ge=1,
        description="Discovery documents and key sets kept (each; least recently used go).",
    )
    allowed_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"],
        min_length=1,
        description="ID-token signature algorithms accepted (asymmetric only; never none/HS*).",
    )
    allow_http_issuers: bool = Field(
        False,
        description="Accept http:// issuer URLs (local test providers only; https otherwise).",
    )
    allow_private_addresses: bool = Field(
        False,
        description="Let providers be on loopback, private or link-local addresses (local test"
        " providers only: otherwise a tenant's issuer could reach this network's services).",
    )

    @field_validator("allowed_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        refused = sorted(set(value) - SSO_ALGORITHMS)
        if refused:
            raise ValueError(f"not allowed for ID tokens: {', '.join(refused)}")
        return value


class WorkerSettings(_Section):
    metrics_port: int | None = Field(
        9464,
        ge=0,
        le=65535,
        description="`storefront worker` serves GET /metrics (operator token) on this port;"
        " 0 or null: no metrics endpoint.",
    )
    metrics_host: str = Field(
        "127.0.0.1", min_length=1, description="Bind address of the worker's /metrics."
    )


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    json_output: bool = Field(True, description="JSON lines (true) or console rendering.")
    access_log: bool = Field(True, description="One log line per request.")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_concurrent_requests: int = Field(
        128, ge=1, description="Requests a process works on at once; more wait at the door."
    )
    queue_timeout_seconds: float = Field(
        1.0, gt=0, description="How long a request may wait at the door before a 503."
    )
    max_body_bytes: int = Field(
        1_048_576, ge=1, description="Largest request body accepted; larger ones get 413."
    )
    body_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A request body must arrive whole within this; else 408. It is read before"
        " the request takes a door slot, so slow senders hold none.",
    )
    max_buffered_body_bytes: int = Field(
        64 * 1_048_576,
        ge=1,
        description="Request bodies being read at once, in bytes, for the whole process; past"
        " it a new body gets 503 server.busy (bounds the memory slow senders can hold).",
    )
    header_timeout_seconds: float = Field(
        10.0,
        gt=0,
        description="A connection's request headers must be complete within this after it"
        " opens (or a new request on it begins); else 408 and close.",
    )
    max_header_bytes: int = Field(
        65536, ge=1024, description="Request line + headers larger than this get 431 and close."
    )
    max_connections: int = Field(
        4096,
        ge=1,
        description="Open connections per process; a new one past it is closed at once.",
    )
    keep_alive_seconds: float = Field(
        5.0, gt=0, description="An idle keep-alive connection is closed after this."
    )
    graceful_shutdown_seconds: float = Field(
        20.0,
        gt=0,
        description="On SIGTERM, requests in flight get this long to finish before uvicorn"
        " closes their connections (Kubernetes: keep terminationGracePeriodSeconds above it"
        " plus the preStop sleep).",
    )
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="Addresses or CIDR networks of the reverse proxies in front of the API;"
        " only from them is X-Forwarded-For believed (the client is its right-most address"
        " that is not a trusted proxy). Empty: the peer address is the client.",
    )
    docs_enabled: bool = Field(True, description="Serve /docs, /redoc and /openapi.json.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value


class WebSocketSettings(_Section):
    """Live order status over WebSocket (`/v1/orders/events`, `/v1/orders/{id}/events`)."""

    ticket_ttl_seconds: float = Field(
        30.0, gt=0, le=600, description="A ticket from POST /v1/ws-tickets is valid this long."
    )
    allowed_origins: list[str] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port]) a browser may open a socket from; a"
        " connection that sends any other Origin is refused (403). Clients that send no Origin"
        " (machines) are not affected. Empty: no browser origin is allowed.",
    )
    queue_size: int = Field(
        256,
        ge=1,
        description="Messages waiting for one socket; past it the client is too slow and is"
        " closed with 1013 (it reconnects with its last sequence).",
    )
    send_timeout_seconds: float = Field(
        2.0,
        gt=0,
        le=4.0,
        description="A message the client does not take within this closes the socket with"
        " 1013 (a client that stops reading is gone within 5 s).",
    )
    heartbeat_seconds: float = Field(
        15.0, gt=0, description="A `heartbeat` message is sent after this long without one."
    )
    send_buffer_bytes: int = Field(
        65536,
        ge=4096,
        description="Kernel send buffer (SO_SNDBUF) of each socket: bounds what a client that"
        " stopped reading pins in the kernel before it is found slow.",
    )
    backfill_limit: int = Field(
        1000,
        ge=1,
        description="Most events one reconnect replays from the database (older ones: list"
        " the orders instead).",
    )
    listen_url: str | None = Field(
        None,
        description="postgresql:// DSN of the primary for the one LISTEN connection per"
        " process, when database.primary.url goes through PgBouncer (transaction mode cannot"
        " LISTEN); null: the primary URL (without PgBouncer) or none (sockets refused, 503).",
    )


_PLAN_NAME = re.compile(r"^[a-z0-9_-]{1,40}$")


class PolicyDefaults(_Section):
    """A tenant's traffic policy where neither its plan nor an operator says otherwise (the
    bottom layer of defaults < plan < tenant override < emergency override)."""

    requests_per_window: int = Field(
        300,
        ge=0,
        le=MAX_QUOTA,
        description="Requests a tenant may make per window (the rate limit's quota).",
    )
    window_seconds: int = Field(
        60, ge=1, le=MAX_QUOTA, description="Length of the rate-limit window."
    )
    burst: int = Field(
        0,
        ge=0,
        le=MAX_QUOTA,
        description="Requests the tenant may make in any one second (a second, 1 s sliding"
        " window beside the main one, so a spike cannot spend the window's quota at once);"
        " 0: no per-second cap.",
    )
    per_api_key: bool = Field(
        False,
        description="Count the window's quota per API key (each key gets requests_per_window;"
        " user tokens share the tenant's) instead of per tenant.",
    )
    db_concurrency_primary: int = Field(
        10,
        ge=0,
        description="Primary connections one tenant may hold at once, per process (checked"
        " before pool checkout; at the cap a request waits tenancy.db_wait_seconds, then 503"
        " database.tenant_busy). 0 refuses every request that needs the primary.",
    )
    db_concurrency_replica: int = Field(
        10, ge=0, description="The same for replica connections (all replicas together)."
    )


class PlanSettings(_Section):
    """One plan: any field left out (null) is taken from tenancy.defaults."""

    requests_per_window: int | None = Field(None, ge=0, le=MAX_QUOTA)
    window_seconds: int | None = Field(None, ge=1, le=MAX_QUOTA)
    burst: int | None = Field(None, ge=0, le=MAX_QUOTA)
    per_api_key: bool | None = None
    db_concurrency_primary: int | None = Field(None, ge=0)
    db_concurrency_replica: int | None = Field(None, ge=0)


class TenancySettings(_Section):
    """Per-tenant policy resolution and database fairness (app/tenancy, app/db/fairness.py)."""

    defaults: PolicyDefaults = PolicyDefaults()
    db_wait_seconds: float = Field(
        1.0,
        ge=0,
        description="How long a request whose tenant holds all its database connections waits"
        " for one of them before 503 database.tenant_busy (+ Retry-After).",
    )
    metrics_top_tenants: int = Field(
        10,
        ge=0,
        le=100,
        description="/metrics labels per-tenant connection gauges only for this many tenants"
        " (those holding the most connections now); the rest are summed without a label.",
    )


class _YamlFiles(PydanticBaseSettingsSource):
    """base.yaml deep-merged with <env>.yaml (pydantic-settings' YAML source merges shallowly)."""

    def __init__(self, settings_cls: type[BaseSettings], env: str) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        raise NotImplementedError  # __call__ is overridden

    def __call__(self) -> dict[str, Any]:
        merged: dict[str, Any] = {}
        for name in ("base.yaml", f"{self.env}.yaml"):
            path = CONFIG_DIR / name
            if path.exists():
                _deep_merge(merged, yaml.safe_load(path.read_text()) or {})
        return merged


def _deep_merge(into: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _deep_merge(into[key], value)
        else:
            into[key] = value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STOREFRONT_", env_nested_delimiter="__", extra="forbid", frozen=True
    )

    env: str = "dev"
    database: DatabaseSettings = DatabaseSettings()
    ops: OpsSettings = OpsSettings()
    auth: AuthSettings = AuthSettings()
    redis: RedisSettings = RedisSettings()
    rate_limits: RateLimitSettings = RateLimitSettings()
    payments: PaymentSettings = PaymentSettings()
    orders: OrderSettings = OrderSettings()
    api: ApiSettings = ApiSettings()
    outbox: OutboxSettings = OutboxSettings()
    worker: WorkerSettings = WorkerSettings()
    broker: BrokerSettings = BrokerSettings()
    invalidation: InvalidationSettings = InvalidationSettings()
    secrets: SecretsSettings = SecretsSettings()
    sso: SsoSettings = SsoSettings()
    plans: dict[str, PlanSettings] = Field(
        default_factory=dict,
        description="Named plans (tenants.plan); config/base.yaml defines free, pro, enterprise.",
    )
    tenancy: TenancySettings = TenancySettings()

    @field_validator("plans")
    @classmethod
    def _plan_names(cls, value: dict[str, PlanSettings]) -> dict[str, PlanSettings]:
        for name in value:
            if not _PLAN_NAME.match(name):
                raise ValueError(f"plan name {name!r} must match [a-z0-9_-]{{1,40}}")
        return value

    logging: LoggingSettings = LoggingSettings()
    server: ServerSettings = ServerSettings()
    websocket: WebSocketSettings = WebSocketSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        env = os.environ.get("STOREFRONT_ENV", "dev")
        sources: list[PydanticBaseSettingsSource] = [init_settings]
        secrets_dir = os.environ.get("STOREFRONT_SECRETS_DIR")
        if secrets_dir:
            # One file per setting, named like its env var: storefront_ops__operator_token.
            sources.append(
                NestedSecretsSettingsSource(file_secret_settings, secrets_dir=secrets_dir)
            )
        sources.append(env_settings)
        if env == "dev" and dev_env_file().is_file():
            # After `make run`, every command finds the local cluster without sourcing the file;
            # a real environment variable still wins over it.
            sources.append(DotEnvSettingsSource(settings_cls, env_file=dev_env_file()))
        sources.append(_YamlFiles(settings_cls, env))
        return tuple(sources)

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain data, with secrets and URL passwords masked."""
        masked: dict[str, Any] = _mask(self.model_dump(mode="json"))
        return masked


_URL_PASSWORD = re.compile(r"(://[^:/@]+:)[^@]+@")


def _mask(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    if isinstance(value, str):
        return _URL_PASSWORD.sub(r"\1***@", value)
    return value


def load_settings(**overrides: Any) -> Settings:
    return Settings(**overrides)


def describe_error(error: ValidationError) -> str:
    """One line naming each invalid setting, for start-up failures."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "settings"
        parts.append(f"{where}: {item['msg']}")
    return "invalid settings: " + "; ".join(parts)
