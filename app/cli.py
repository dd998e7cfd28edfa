"""`storefront` command: serve, migrate, config, dev cluster, tenants, users, API keys, auth.

Every command reads the same settings as the server (in the `dev` env also `.local/dev.env`,
so after `make run` no file needs sourcing). A failure is one line on stderr, `error: ...`, and
exit 1 (usage errors exit 2); `storefront --debug ...` shows the traceback and the log instead.
One-shot commands write no log unless `--debug`: their outcome is what they print.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, NoReturn, TypeVar

import typer
import typer.core
from pydantic import ValidationError
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError  # typer's click

from app.core.errors import DomainError
from app.db.errors import connect_failure
from app.devcluster import ClusterError, LocalCluster
from app.identity.permissions import Role, render_markdown
from app.identity.tokens import generate_signing_key
from app.logging import configure_logging
from app.settings import Settings, describe_error, load_settings, local_dir

T = TypeVar("T")
LOCAL = local_dir()

cli = typer.Typer(
    help="Storefront: multi-tenant commerce backend.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # failures are one line (main()); --debug re-raises
)
config_cli = typer.Typer(help="Effective configuration.", no_args_is_help=True)
dev_cli = typer.Typer(
    help="Local PostgreSQL primary + replica under .local/.", no_args_is_help=True
)
tenants_cli = typer.Typer(help="Tenants (operator).", no_args_is_help=True)
keys_cli = typer.Typer(help="API keys (operator).", no_args_is_help=True)
users_cli = typer.Typer(help="Users (operator).", no_args_is_help=True)
auth_cli = typer.Typer(help="Access model and signing keys.", no_args_is_help=True)
db_cli = typer.Typer(help="Database checks.", no_args_is_help=True)
events_cli = typer.Typer(
    help="Outbox events (operator): dead letters, read model replays.", no_args_is_help=True
)
flags_cli = typer.Typer(help="Feature flags (operator).", no_args_is_help=True)
secrets_cli = typer.Typer(help="Tenant secrets at rest: keys and rotation.", no_args_is_help=True)
cli.add_typer(config_cli, name="config")
cli.add_typer(dev_cli, name="dev")
cli.add_typer(tenants_cli, name="tenants")
cli.add_typer(keys_cli, name="api-keys")
cli.add_typer(users_cli, name="users")
cli.add_typer(auth_cli, name="auth")
cli.add_typer(db_cli, name="db")
cli.add_typer(events_cli, name="events")
api_cli = typer.Typer(help="API versions: usage and changelog.", no_args_is_help=True)
cli.add_typer(api_cli, name="api")
limits_cli = typer.Typer(help="Tenant traffic policies (operator).", no_args_is_help=True)
cli.add_typer(limits_cli, name="limits")
cli.add_typer(flags_cli, name="flags")
cli.add_typer(secrets_cli, name="secrets")


class _Options:
    debug = False  # set by the global --debug option


@cli.callback()
def _global_options(
    debug: Annotated[
        bool, typer.Option("--debug", help="On failure show the traceback and the log.")
    ] = False,
) -> None:
    _Options.debug = debug


def fail(message: str) -> NoReturn:
    raise typer.Exit(_report(message, 1))


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.strip().splitlines() if line.strip())


def describe_failure(error: BaseException) -> str:
    """The one line a failed command prints (after `error: `)."""
    unreachable = connect_failure(error)
    if unreachable is not None:
        return f"cannot connect to the database: {unreachable}"
    if isinstance(error, DomainError):
        return f"{error.code}: {error.detail}"
    if isinstance(error, ValidationError):
        return describe_error(error)
    if isinstance(error, OSError | ClusterError):
        return str(error) or type(error).__name__
    text = _one_line(str(error))
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _check_listenable(host: str, port: int) -> None:
    """Fail in one line before serving when the address cannot be bound (uvicorn would start
    the app, log the bind error and shut it down again)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        fail(f"cannot listen on {host}:{port}: {error.strerror or error}")


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except ValidationError as error:
        fail(describe_error(error))
        raise  # unreachable: fail() exits


@asynccontextmanager
async def _container(logs: bool) -> AsyncIterator[Any]:
    from containers import Container  # composition root, imported by entry points only

    settings = settings_or_exit()
    configure_logging(settings.logging, silent=not (logs or _Options.debug))
    container: Any = Container()
    container.settings.override(settings)
    # No resources started: a one-shot command needs no health monitor, so its reads go to
    # the primary (replicas count as unprobed) and see what it just wrote.
    try:
        yield container
    finally:
        await container.database().close()


def run(work: Callable[[Any], Coroutine[Any, Any, T]], logs: bool = False) -> T:
    """Run one async use case against a fresh container (`logs`: a long-running command, whose
    log is its output); a failure becomes one line in main()."""

    async def main() -> T:
        async with _container(logs) as container:
            return await work(container)

    return asyncio.run(main())


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (server.host).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (server.port).")] = None,
) -> None:
    """Serve the HTTP API with uvicorn (one process; scale out with more processes).

    X-Forwarded-For is believed only from server.trusted_proxies (default: none)."""
    import uvicorn

    from app.http.serving import uvicorn_options

    settings = settings_or_exit()
    options = uvicorn_options(settings)
    options["host"] = host or options["host"]
    options["port"] = port or options["port"]
    _check_listenable(options["host"], options["port"])
    uvicorn.run("app.main:asgi", factory=True, **options)


class _MigrateGroup(typer.core.TyperGroup):
    """`storefront migrate [REVISION]` is `storefront migrate up [REVISION]`: words that name
    no subcommand (or none at all) go to `up`, so the documented form keeps working."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if not args or (args[0] not in self.commands and not args[0].startswith("-")):
            args = ["up", *args]
        return super().parse_args(ctx, args)


migrate_cli = typer.Typer(
    cls=_MigrateGroup,
    help="Schema migrations (as database.migration_url, the schema owner) and backfills.",
)
cli.add_typer(migrate_cli, name="migrate")


@migrate_cli.command("up")
def migrate(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply database migrations (as database.migration_url, the schema owner); `storefront
    migrate` alone does this. Expand and contract steps: docs/operations.md."""
    from alembic.config import Config

    from alembic import command
    from app.ops.service import ALEMBIC_INI

    settings_or_exit()
    try:
        command.upgrade(Config(str(ALEMBIC_INI)), revision)
    except Exception as error:  # alembic and drivers raise many types; report one line
        if _Options.debug:
            raise
        fail(f"migration failed: {describe_failure(error)}")
    typer.echo(f"migrated to {revision}")


@migrate_cli.command("backfill")
def migrate_backfill(
    name: Annotated[str, typer.Argument(help="e.g. order_line_amounts (app/db/backfills.py).")],
    batch_size: Annotated[int, typer.Option(min=1, max=100_000, help="Rows per batch.")] = 1000,
    max_batches: Annotated[
        int | None, typer.Option(min=1, help="Stop after this many (run again to resume).")
    ] = None,
    pause: Annotated[
        float, typer.Option(min=0, help="Seconds between batches (spares replicas and IO).")
    ] = 0.0,
) -> None:
    """Fill a column an expand migration added, in batches of one short transaction each, as
    the schema owner; resumable (progress in backfill_progress), safe to run twice or
    concurrently. Run it after the new code serves everywhere, before the contract migration."""
    from app.db.backfills import BatchDone, run_backfill

    settings = settings_or_exit()

    def report(batch: BatchDone) -> None:
        at = ",".join(batch.last_key or ()) or "start"
        typer.echo(
            f"{name}: {batch.phase} batch: {batch.updated} of {batch.seen} row(s) updated,"
            f" {batch.total} in total (key {at})"
        )

    result = asyncio.run(
        run_backfill(
            settings.database.owner_url,
            name,
            connect_timeout=settings.database.connect.connect_timeout,
            batch_size=batch_size,
            max_batches=max_batches,
            pause_seconds=pause,
            on_batch=report,
        )
    )
    if result.done_at is None:
        typer.echo(
            f"{name}: stopped after {result.batches} batch(es), {result.updated} row(s) updated"
            f" ({result.total} in total); run it again to resume"
        )
        return
    typer.echo(
        f"{name}: done, {result.updated} row(s) updated by this run, {result.total} in total"
    )


@config_cli.command("show")
def config_show() -> None:
    """Print the effective settings as JSON, secrets masked."""
    typer.echo(json.dumps(settings_or_exit().masked(), indent=2))


def _cluster() -> LocalCluster:
    return LocalCluster(LOCAL / "pg")


def _dev_env(cluster: LocalCluster) -> dict[str, str]:
    token_file = LOCAL / "operator-token"
    if not token_file.exists():
        token_file.write_text(secrets.token_urlsafe(32) + "\n")
        token_file.chmod(0o600)
    app_dsn = "postgresql+asyncpg://storefront_app@127.0.0.1:{}/storefront"
    return {
        "STOREFRONT_DATABASE__PRIMARY__URL": app_dsn.format(cluster.primary_port),
        "STOREFRONT_DATABASE__REPLICAS": json.dumps(
            [{"url": app_dsn.format(cluster.replica_port), "weight": 1}]
        ),
        "STOREFRONT_DATABASE__MIGRATION_URL": cluster.dsn("primary").replace(
            "postgresql://", "postgresql+asyncpg://"
        ),
        "STOREFRONT_DATABASE__CONNECT__SSL": "disable",  # loopback: skip the TLS negotiation
        "STOREFRONT_OPS__OPERATOR_TOKEN": token_file.read_text().strip(),
        # A key kept across restarts, so `make run` sessions survive a restart of the server.
        "STOREFRONT_AUTH__TOKENS__KEYS": json.dumps([_dev_signing_key()]),
        # Likewise the key of tenant secrets: they stay readable across restarts.
        "STOREFRONT_SECRETS__KEYS": json.dumps([_dev_secrets_key()]),
    }


def _dev_secrets_key() -> str:
    from app.secrets.box import generate_key

    key_file = LOCAL / "secrets-key"
    if not key_file.exists():
        key_file.write_text(generate_key() + "\n")
        key_file.chmod(0o600)
    return key_file.read_text().strip()


def _dev_signing_key() -> dict[str, str]:
    key_file = LOCAL / "jwt-signing-key.json"
    if not key_file.exists():
        key_file.write_text(json.dumps(generate_signing_key("dev-1")))
        key_file.chmod(0o600)
    key: dict[str, str] = json.loads(key_file.read_text())
    return key


@dev_cli.command("up")
def dev_up() -> None:
    """Create (first time) and start the local primary + replica; write .local/dev.env."""
    try:
        LOCAL.mkdir(exist_ok=True)
        cluster = _cluster()
        statuses = cluster.up()
        env = _dev_env(cluster)
    except (ClusterError, OSError) as error:
        fail(str(error))
    (LOCAL / "dev.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    for status in statuses:
        typer.echo(f"{status.role}: {status.state} on 127.0.0.1:{status.port}")


@dev_cli.command("down")
def dev_down() -> None:
    """Stop the local servers (data is kept)."""
    try:
        _cluster().down()
    except ClusterError as error:
        fail(str(error))


@dev_cli.command("status")
def dev_status(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Role, port, data directory and state of each local server."""
    try:
        statuses = _cluster().status()
    except ClusterError as error:
        fail(str(error))
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
        return
    for s in statuses:
        typer.echo(f"{s.role:8} {s.state:8} port={s.port} data={s.data_dir}")


@dev_cli.command("seed")
def dev_seed(slug: str = "demo") -> None:
    """Idempotent: the demo tenant, its owner (password in .local/demo-owner-password) and a
    working API key in .local/demo-api-key."""
    key_file = LOCAL / "demo-api-key"
    password_file = LOCAL / "demo-owner-password"

    async def work(container: Any) -> None:
        tenants = container.tenant_service()
        keys = container.api_key_service()
        try:
            tenant = await tenants.by_slug(slug)
        except DomainError:
            tenant = await tenants.create(slug, slug.capitalize())
        if not password_file.exists():
            password = secrets.token_urlsafe(18)
            await container.user_service().create(
                tenant.id, f"owner@{slug}.example", password, Role.owner
            )
            password_file.write_text(password + "\n")
            password_file.chmod(0o600)
        if key_file.exists():
            try:
                await keys.authenticate(key_file.read_text().strip())
                return
            except DomainError:
                pass
        _, secret = await keys.issue(tenant.id, "demo", ["catalog:read", "catalog:write"])
        key_file.write_text(secret + "\n")
        key_file.chmod(0o600)

    run(work)
    typer.echo(
        f"tenant '{slug}' ready; API key in {key_file}; log in as owner@{slug}.example with"
        f" the password in {password_file}"
    )


@tenants_cli.command("create")
def tenants_create(
    slug: Annotated[str, typer.Option(help="[a-z0-9-]{3,40}, unique.")],
    name: Annotated[str, typer.Option(help="Display name.")],
) -> None:
    """Create a tenant."""
    tenant = run(lambda c: c.tenant_service().create(slug, name))
    typer.echo(f"created tenant {tenant.slug} ({tenant.id})")


@tenants_cli.command("list")
def tenants_list() -> None:
    """List tenants."""
    for tenant in run(lambda c: c.tenant_service().list()):
        typer.echo(f"{tenant.slug}\t{tenant.id}\t{tenant.name}")


def _print_policy(
    explained: Any,
    as_json: bool = False,
    usage: dict[str, Any] | None = None,
    with_usage: bool = False,
) -> None:
    """The effective policy, value by value, with the layer each value comes from; with
    `with_usage` (limits show) also `usage`, the tenant's quota windows now (None: they are
    not shared between processes, so this process has nothing to show)."""
    config = explained.config
    if as_json:
        document: dict[str, Any] = {
            "tenant": {"id": str(config.id), "slug": config.slug, "plan": config.plan},
            "plan_known": explained.policy.plan_known,
            "overrides": config.overrides,
            "emergency": config.emergency,
            "effective": {
                name: {"value": value, "source": source}
                for name, value, source in explained.lines()
            },
        }
        if with_usage:
            document["usage"] = usage
        typer.echo(json.dumps(document))
        return
    known = "" if explained.policy.plan_known else " (not in settings: tenancy.defaults apply)"
    typer.echo(f"tenant {config.slug} ({config.id}) plan={config.plan}{known}")
    for name, value, source in explained.lines():
        typer.echo(f"  {name:<24}{json.dumps(value):<10}{source}")
    if with_usage and usage is None:
        typer.echo("  usage: not shared (no redis.url): see /ops/tenants/{id} of each process")
    for quota in usage["quotas"] if usage else []:
        left = "unknown (store down)" if quota["remaining"] is None else quota["remaining"]
        typer.echo(
            f"  usage {quota['name']}: {left} of {quota['limit']} left in"
            f" {quota['window_seconds']} s (frees in {quota['reset_seconds']} s)"
        )


@tenants_cli.command("api-version")
def tenants_api_version(
    slug: Annotated[str, typer.Argument(help="Tenant slug.")],
    version: Annotated[str, typer.Argument(help="An API version (docs/changelog.md).")],
) -> None:
    """Pin a tenant to an API version (what its requests get without a Storefront-Version
    header); every API process applies it within ~2 s."""
    record = run(lambda c: c.tenancy_service().pin_api_version(slug, version))
    typer.echo(f"tenant {slug} is now pinned to API version {record.api_version}")


@api_cli.command("usage")
def api_usage(
    deprecated: Annotated[
        bool, typer.Option("--deprecated", help="Only versions deprecated in api.deprecations.")
    ] = False,
    days: Annotated[int, typer.Option(min=1, help="Look back this many days.")] = 30,
    as_json: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """Requests per tenant and API version (summed over every API process, as of their last
    flush): whom to contact before a version's sunset."""
    from datetime import UTC, datetime, timedelta

    async def work(container: Any) -> Any:
        entries = container.settings().api.deprecations
        marked = {e.version: e for e in entries if e.version is not None}
        since = (datetime.now(UTC) - timedelta(days=days)).date()
        uses = await container.version_usage().report(since, sorted(marked) if deprecated else None)
        return uses, marked

    uses, marked = run(work)
    if deprecated and not marked:
        typer.echo("no API version is deprecated (api.deprecations)")
        return
    for use in uses:
        entry = marked.get(use.version)
        sunset = entry.sunset_at.isoformat() if entry and entry.sunset_at else None
        if as_json:
            line = {"tenant": use.slug, "tenant_id": str(use.tenant_id), "version": use.version}
            line |= {"requests": use.requests, "last_seen_at": use.last_seen_at.isoformat()}
            typer.echo(json.dumps(line | {"deprecated": entry is not None, "sunset_at": sunset}))
            continue
        status = f" deprecated, sunset {sunset or 'not set'}" if entry else ""
        typer.echo(
            f"{use.version}  {use.slug:<24} {use.requests:>10} requests, last"
            f" {use.last_seen_at.isoformat(timespec='seconds')}{status}"
        )
    if not uses:
        typer.echo(f"no requests in the last {days} days")


@api_cli.command("changelog")
def api_changelog() -> None:
    """Every API version and what it changed (docs/changelog.md is this output)."""
    from app.versions import changelog

    typer.echo(changelog(), nl=False)


@tenants_cli.command("set-plan")
def tenants_set_plan(
    slug: Annotated[str, typer.Argument(help="Tenant slug.")],
    plan: Annotated[str, typer.Argument(help="A plan of the settings (plans.<name>).")],
) -> None:
    """Put a tenant on a plan; every API process applies it within ~2 s, no restart."""
    explained = run(lambda c: c.tenancy_service().set_plan(slug, plan))
    typer.echo(f"tenant {slug} is now on plan {plan}")
    _print_policy(explained)


@tenants_cli.command("override")
def tenants_override(
    slug: Annotated[str, typer.Argument(help="Tenant slug.")],
    assignments: Annotated[
        list[str] | None,
        typer.Argument(help="key=value ... (policy fields; with --clear: just the keys)."),
    ] = None,
    emergency: Annotated[
        bool, typer.Option("--emergency", help="The emergency layer (beats everything).")
    ] = False,
    clear: Annotated[
        bool, typer.Option("--clear", help="Remove the named keys, or the whole layer.")
    ] = False,
) -> None:
    """Set (or --clear) a tenant's overrides of its plan; validated before anything is stored."""
    from app.tenancy.policy import parse_assignments

    words = assignments or []

    async def work(container: Any) -> Any:
        if clear:
            values: dict[str, Any] = dict.fromkeys(w.partition("=")[0].strip() for w in words)
        else:
            values = dict(parse_assignments(words))
        return await container.tenancy_service().override(
            slug, values, emergency=emergency, clear=clear
        )

    explained = run(work)
    layer = "emergency override" if emergency else "overrides"
    typer.echo(f"tenant {slug}: {layer} {'cleared' if clear else 'set'}")
    _print_policy(explained)


@limits_cli.command("show")
def limits_show(
    tenant: Annotated[str, typer.Option("--tenant", help="Tenant slug.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """A tenant's effective policy and where each value comes from (read from the database),
    and its current usage: the windows as the limiter's store sees them (Redis, shared by every
    process, when redis.url is set; without it only each process knows its own)."""

    async def work(container: Any) -> tuple[Any, dict[str, Any] | None]:
        explained = await container.tenancy_service().explain(tenant)
        usage = await container.tenancy_service().rate_limit_usage(explained.config.id)
        return explained, usage if usage and usage["shared"] else None

    explained, usage = run(work)
    _print_policy(explained, as_json, usage=usage, with_usage=True)


def _with_tenant(slug: str, work: Callable[[Any, Any], Awaitable[T]]) -> T:
    async def main(container: Any) -> T:
        tenant = await container.tenant_service().by_slug(slug)
        return await work(container, tenant)

    return run(main)


@keys_cli.command("create")
def keys_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated, e.g. catalog:read,catalog:write")],
    name: Annotated[str, typer.Option(help="A label for the key.")] = "cli",
    expires_in_days: Annotated[int | None, typer.Option(min=1)] = None,
) -> None:
    """Create an API key. The secret is printed once, alone on the last line of stdout."""
    wanted = [s.strip() for s in scopes.split(",") if s.strip()]
    record, secret = _with_tenant(
        tenant,
        lambda c, t: c.api_key_service().issue(t.id, name, wanted, expires_in_days),
    )
    typer.echo(f"created API key {record.id} ({record.prefix}…) scopes={','.join(record.scopes)}")
    typer.echo(secret)


@keys_cli.command("revoke")
def keys_revoke(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    key_id: Annotated[str, typer.Option("--id", help="Key id.")],
) -> None:
    """Revoke an API key now."""
    import uuid

    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        fail("--id must be a UUID")
    _with_tenant(tenant, lambda c, t: c.api_key_service().revoke(t.id, parsed))
    typer.echo(f"revoked {key_id}")


@cli.command()
def worker(
    once: Annotated[bool, typer.Option("--once", help="One pass of every job, then exit.")] = False,
) -> None:
    """Outbox relay, event consumers, saga recovery, cleanup (see app/worker.py)."""
    from app.worker import run as run_worker

    report = run(lambda c: run_worker(c, once), logs=not once)
    if report is not None:
        typer.echo(json.dumps(report))
        failed = [job for job, done in report.items() if done < 0]
        if failed:
            fail(f"worker jobs failed: {', '.join(failed)} (--debug: the log says why)")


@cli.command("sandbox-gateway")
def sandbox_gateway(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8090,
) -> None:
    """Serve the sandbox payment provider (point payments.url at it)."""
    import uvicorn

    from app.payments.sandbox import SandboxProvider

    _check_listenable(host, port)
    uvicorn.run(SandboxProvider().app, host=host, port=port, log_level="warning")


def _read_password() -> str:
    """Prompted twice on a terminal; otherwise the first line of stdin, with no prompt and no
    getpass warning (so a piped password keeps stderr to the one-line contract)."""
    if sys.stdin.isatty():
        entered: str = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        return entered
    line = sys.stdin.readline().rstrip("\r\n")
    if not line:
        fail("no password: type it at the prompt or send it as the first line of stdin")
    return line


@users_cli.command("create")
def users_create(
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
    email: Annotated[str, typer.Option(help="Login name; unique within the tenant.")],
    role: Annotated[str, typer.Option(help="owner | admin | member | viewer")] = "member",
    password: Annotated[
        str | None,
        typer.Option(
            help="Avoid it (argv is visible to `ps`): prompted, or the first line of stdin."
        ),
    ] = None,
) -> None:
    """Create a user of a tenant (any role, owner included)."""
    if role not in Role.__members__:
        fail("--role must be owner, admin, member or viewer")
    if password is None:
        password = _read_password()
    user = _with_tenant(
        tenant, lambda c, t: c.user_service().create(t.id, email, password, Role[role])
    )
    typer.echo(f"created user {user.email} ({user.id}) role={user.role}")


@auth_cli.command("permissions")
def auth_permissions() -> None:
    """Print the permission table (roles and API-key scopes) as Markdown."""
    typer.echo(render_markdown(), nl=False)


@auth_cli.command("unlock")
def auth_unlock(
    email: Annotated[str | None, typer.Option(help="Its accounts in every tenant.")] = None,
    address: Annotated[
        str | None, typer.Option(help="A client IP address (IPv6: its /64).")
    ] = None,
    tenant: Annotated[str | None, typer.Option(help="Only the email's account here.")] = None,
) -> None:
    """Lift a login lockout (auth.lockout) of an email or a client address now. Needs
    redis.url: without it each API process counts in its own memory (restart them)."""
    import ipaddress

    from app.http.client_address import throttle_bucket

    if email is None and address is None:
        fail("name --email or --address (or both)")
    if address is not None:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            fail(f"--address must be an IP address, got {address!r}")
    bucket = None if address is None else throttle_bucket(address)
    done = run(lambda c: c.auth_service().unlock(email=email, address=bucket, tenant=tenant))
    if not done.shared:
        fail(
            "login failures are counted in each API process's memory (redis.url is unset):"
            " restarting the API processes clears them"
        )
    cleared = [f"{done.accounts} account(s) of {email}"] if email is not None else []
    cleared += [f"address {bucket}"] if bucket is not None else []
    typer.echo(f"unlocked {' and '.join(cleared)}")


@auth_cli.command("keygen")
def auth_keygen(
    kid: Annotated[str, typer.Option(help="Key id, e.g. 2026-11.")],
    algorithm: Annotated[str, typer.Option(help="EdDSA | ES256 | RS256")] = "EdDSA",
) -> None:
    """Print a new signing key as one JSON entry for auth.tokens.keys (append it to rotate)."""
    try:
        typer.echo(json.dumps(generate_signing_key(kid, algorithm)))
    except ValueError as error:
        fail(str(error))


@db_cli.command("status")
def db_status(
    processes: Annotated[
        int, typer.Option(min=1, envvar="WEB_CONCURRENCY", help="API processes per server.")
    ] = 1,
    reserve: Annotated[
        int, typer.Option(min=0, help="Connections kept free for replication, admin, others.")
    ] = 10,
) -> None:
    """Pool budget per server: processes x (size + max_overflow) against max_connections."""
    lines = run(lambda c: c.ops_service().capacity(processes, reserve))
    for line in lines:
        verdict = "ok" if line.fits else "WARNING: over budget"
        typer.echo(
            f"{line.engine}: {processes} x pool = {line.budget} connections;"
            f" max_connections {line.max_connections}, usable {line.usable}"
            f" (reserve {reserve}), in use now {line.in_use}: {verdict}"
        )
    if not all(line.fits for line in lines):
        raise typer.Exit(2)


@events_cli.command("dead-letters")
def events_dead_letters(
    limit: Annotated[int, typer.Option(min=1, max=10_000)] = 100,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List events set aside because a consumer could not apply them (oldest first)."""
    letters = run(lambda c: c.outbox_relay().dead_letters(limit))
    if as_json:
        rows = [
            {
                "id": str(x.id),
                "tenant_id": str(x.tenant_id),
                "topic": x.topic,
                "attempts": x.attempts,
                "dead_lettered_at": x.dead_lettered_at.isoformat(),
                "last_error": x.last_error,
            }
            for x in letters
        ]
        typer.echo(json.dumps(rows))
        return
    for x in letters:
        when = x.dead_lettered_at.isoformat()
        typer.echo(f"{x.id}\t{x.topic}\t{x.tenant_id}\t{x.attempts}\t{when}\t{x.last_error}")


@events_cli.command("retry")
def events_retry(
    event_ids: Annotated[list[str] | None, typer.Argument(help="Event ids.")] = None,
    retry_all: Annotated[bool, typer.Option("--all", help="Every dead letter.")] = False,
) -> None:
    """Publish dead-lettered events again (once the cause is fixed); the inbox dedupes."""
    import uuid

    if bool(event_ids) == retry_all:
        fail("name event ids or pass --all (not both)")
    try:
        ids = None if retry_all else [uuid.UUID(x) for x in event_ids or []]
    except ValueError:
        fail("event ids must be UUIDs")
    count = run(lambda c: c.outbox_relay().retry_dead_letters(ids))
    typer.echo(f"{count} event(s) due again; the relay (worker or relay_in_api) publishes them")


@events_cli.command("replay")
def events_replay(
    projection: Annotated[
        str, typer.Option(help="The read model to rebuild (sales_daily).", show_default=False)
    ],
    tenant: Annotated[
        str | None, typer.Option(help="Only this tenant (slug); default: every tenant.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Rebuild a read model from the retained event log and swap it in per tenant once caught
    up; the live one keeps serving (and being fed) until then (docs/operations.md)."""
    results = run(lambda c: c.replayer().replay(projection, tenant))
    rows = [
        {
            "tenant": x.slug,
            "tenant_id": str(x.tenant_id),
            "events": x.events,
            "skipped": [str(e) for e in x.skipped],
            "checksum": x.rebuilt_checksum,
            "live_checksum": x.live_checksum,
            "changed": x.live_checksum != x.rebuilt_checksum,
        }
        for x in results
    ]
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for row in rows:
        drift = "differed from the live one" if row["changed"] else "identical to the live one"
        typer.echo(
            f"{row['tenant']}: {row['events']} event(s) replayed, {len(row['skipped'])} left out;"
            f" rebuilt table swapped in, {drift} (md5 {row['checksum']})"
        )
    for x in results:
        for event_id in x.skipped:
            typer.echo(f"left out (refused by {projection}): tenant {x.slug} event {event_id}")
    typer.echo(f"{projection}: {len(rows)} tenant(s) rebuilt")


@secrets_cli.command("keygen")
def secrets_keygen() -> None:
    """Print a new Fernet key for secrets.keys (put it first to rotate; see docs/operations.md)."""
    from app.secrets.box import generate_key

    typer.echo(generate_key())


@secrets_cli.command("rotate-key")
def secrets_rotate_key() -> None:
    """Re-encrypt every stored tenant secret under the first key of secrets.keys (one
    transaction per tenant batch; secrets already under it are skipped, so re-runs are cheap).
    Exits 1 if any secret cannot be decrypted with the configured keys."""
    report = run(lambda c: c.secret_key_rotation().rotate_all())
    typer.echo(
        f"re-encrypted {report.rotated} secret(s) of {report.tenants} tenant(s) under the first"
        f" key; {report.current} already under it"
    )
    for tenant_id, name in report.undecryptable:
        typer.echo(f"undecryptable: tenant {tenant_id} secret {name}")
    if report.undecryptable:
        tenant_id, name = report.undecryptable[0]
        fail(
            f"secrets.undecryptable: {len(report.undecryptable)} secret(s) cannot be decrypted"
            f" with any key in secrets.keys (first: tenant {tenant_id}, {name}); restore the key"
            " they were written under"
        )


def _flag_line(flag: Any) -> str:
    state = "enabled" if flag.enabled else "disabled"
    rollout = f"{flag.rollout_buckets / 100:g}%"
    return f"{flag.key}\t{state}\trollout={rollout}\toverrides={len(flag.overrides)}" + (
        f"\t{flag.description}" if flag.description else ""
    )


@flags_cli.command("list")
def flags_list(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every flag: enabled, rollout share, per-tenant overrides."""
    flags = run(lambda c: c.flag_service().list())
    if as_json:
        rows = [
            {
                "key": f.key,
                "description": f.description,
                "enabled": f.enabled,
                "rollout_percent": f.rollout_buckets / 100,
                "overrides": {str(t): v for t, v in f.overrides.items()},
                "updated_at": f.updated_at.isoformat(),
            }
            for f in flags
        ]
        typer.echo(json.dumps(rows))
        return
    for flag in flags:
        typer.echo(_flag_line(flag))


@flags_cli.command("set")
def flags_set(
    key: Annotated[str, typer.Argument(help="Flag key, e.g. catalog.search_prefix.")],
    enabled: Annotated[
        bool | None,
        typer.Option("--enabled/--disabled", help="The kill switch (beats every override)."),
    ] = None,
    rollout: Annotated[
        float | None,
        typer.Option(min=0, max=100, help="Percent of tenants on (0-100, 0.01 steps)."),
    ] = None,
    description: Annotated[str | None, typer.Option(help="What the flag changes.")] = None,
) -> None:
    """Create a flag (disabled, 0% unless told otherwise) or change the fields given. Every
    API process applies it within about 2 s. Raising the rollout keeps every tenant already on."""
    from app.flags.rules import percent_to_buckets

    buckets = None if rollout is None else percent_to_buckets(rollout)
    flag = run(
        lambda c: c.flag_service().set(
            key, enabled=enabled, rollout_buckets=buckets, description=description
        )
    )
    typer.echo(_flag_line(flag))


@flags_cli.command("override")
def flags_override(
    key: Annotated[str, typer.Argument(help="Flag key.")],
    value: Annotated[str, typer.Argument(help="on | off | clear")],
    tenant: Annotated[str, typer.Option(help="Tenant slug.")],
) -> None:
    """Force a flag on or off for one tenant (beats the rollout; a disabled flag stays off),
    or clear the override."""
    choices = {"on": True, "off": False, "clear": None}
    if value not in choices:
        fail("the value must be on, off or clear")
    flag = _with_tenant(tenant, lambda c, t: c.flag_service().override(key, t.id, choices[value]))
    typer.echo(_flag_line(flag))


def main(args: list[str] | None = None) -> NoReturn:
    """The `storefront` entry point: every failure is one line on stderr (module docstring)."""
    raise SystemExit(_invoke(args))


def _invoke(args: list[str] | None) -> int:
    command = typer.main.get_command(cli)
    try:
        code = command.main(args, prog_name="storefront", standalone_mode=False)
    except NoArgsIsHelpError as error:  # typer has printed the help on stdout
        typer.echo(error.format_message(), nl=False)
        return _report(f"missing command; {error.ctx.command_path} --help lists them", 2)
    except UsageError as error:
        where = f" (see {error.ctx.command_path} --help)" if error.ctx else ""
        return _report(error.format_message() + where, 2)
    except ClickException as error:
        return _report(error.format_message(), error.exit_code)
    except typer.Abort:
        return _report("aborted", 1)
    except Exception as error:
        if _Options.debug:
            raise
        return _report(describe_failure(error), 1)
    try:
        sys.stdout.flush()  # a full disk or a closed pipe is a failure too
    except OSError as error:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # drop what is left
        return _report(f"cannot write the output: {error.strerror or error}", 1)
    return int(code or 0)


def _report(message: str, code: int) -> int:
    typer.echo(f"error: {_one_line(message)}", err=True)
    return code


if __name__ == "__main__":
    main()
