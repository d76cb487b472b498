"""`customer-focus`: run the platform locally and operate it.

Each command is a small function over `ops.platform` (what the service image
needs too: `migrate`, `outbox`, `token`, `replay`) or `ops.stack` (the local
launcher behind `up`, which needs the `ops` dependency group and is imported
only there).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import re
import secrets
import signal
import sys
import threading
import uuid
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, TypeVar

import asyncpg
import typer
from sqlalchemy.exc import SQLAlchemyError

from ops.demo import DemoError, DemoTargets, play, render
from ops.embedded import OpsGroupMissing, require_ops_group
from ops.platform import (
    ADMIN_TOKEN_FILE,
    DEFAULT_BASE_PORT,
    DEFAULT_BROKER_PORT,
    DEFAULT_DATA_DIR,
    SERVICES,
    OutboxBacklog,
    StackError,
    auth_secret,
    database_urls,
    migrate_databases,
    outbox_backlog,
    platform_settings,
)
from services.notifications.replay import ReplayOutcome, parse_since, replay_department
from shared.auth import READ_SCOPES, SCOPES, mint_token
from shared.db import asyncpg_dsn
from shared.outbox import dead_events, requeue_dead_event

if TYPE_CHECKING:
    from ops.stack import Stack

app = typer.Typer(
    name="customer-focus",
    help="Run and operate the Customer Focus Platform.",
    no_args_is_help=True,
    add_completion=False,
)
token_app = typer.Typer(help="Bearer tokens for the services.", no_args_is_help=True)
outbox_app = typer.Typer(help="The transactional outbox of each service.", no_args_is_help=True)
app.add_typer(token_app, name="token")
app.add_typer(outbox_app, name="outbox")


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"customer-focus {importlib.metadata.version('customer-focus-platform')}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", help="Show the version and exit.", callback=_show_version, is_eager=True)
    ] = False,
) -> None:
    """Run and operate the Customer Focus Platform."""


DataDir = Annotated[
    Path, typer.Option("--data-dir", help="Where the embedded PostgreSQL, the secret and the admin token live.")
]
ServiceOption = Annotated[
    list[str] | None, typer.Option("--service", "-s", help="Only this service (repeatable). Default: all four.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="One JSON object per line.")]
T = TypeVar("T")
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(1)


def _services(chosen: list[str] | None) -> list[str]:
    for name in chosen or ():
        if name not in SERVICES:
            raise typer.BadParameter(f"unknown service {name!r}; one of {', '.join(SERVICES)}", param_hint="--service")
    return [s for s in SERVICES if not chosen or s in chosen]


@contextlib.contextmanager
def _database_urls(data_dir: Path, services: list[str]) -> Iterator[dict[str, str]]:
    """`database_urls`, with a CF_<SERVICE>_DATABASE_URL it cannot use reported on one line."""
    with contextlib.ExitStack() as stack:
        try:
            urls = stack.enter_context(database_urls(data_dir, os.environ, services))
        except (StackError, OpsGroupMissing) as exc:
            raise _fail(str(exc)) from None
        yield urls


@app.command()
def up(
    data_dir: DataDir = DEFAULT_DATA_DIR,
    base_port: Annotated[
        int, typer.Option(help="Port of the first service; the others follow (0: any free ports).")
    ] = DEFAULT_BASE_PORT,
    broker_port: Annotated[
        int, typer.Option(help="Port of the embedded broker (0: any free port).")
    ] = DEFAULT_BROKER_PORT,
    service: ServiceOption = None,
) -> None:
    """Start PostgreSQL and a Kafka-protocol broker (embedded unless configured), then every service.

    CF_<SERVICE>_DATABASE_URL and CF_KAFKA_BOOTSTRAP_SERVERS name real ones instead.

    Every other CF_* setting in the environment reaches the services; logs are plain text unless CF_LOG_JSON=true.
    """
    try:
        require_ops_group("`customer-focus up`")
    except OpsGroupMissing as exc:
        raise _fail(str(exc)) from None
    from ops.stack import Stack, StackOptions

    options = StackOptions(data_dir=data_dir, base_port=base_port, broker_port=broker_port, services=_services(service))
    stack = Stack(options)
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if stop_requested.is_set():
            return
        stop_requested.set()
        # While starting, unwind the start at once; once up, the main thread is waiting.
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in STOP_SIGNALS:
        signal.signal(signum, request_stop)
    failed = False
    try:
        stack.start()
        stack.printer.block(stack.banner())
        while not stop_requested.wait(1.0):
            _report_exits(stack)
    except KeyboardInterrupt:
        pass
    except StackError as exc:
        stack.say(f"error: {exc}")
        failed = True
    finally:
        _stop(stack)
    if failed:
        raise typer.Exit(1)


def _report_exits(stack: Stack) -> None:
    for name, service in stack.services.items():
        if service.process is not None and service.process.returncode is None and not service.running():
            stack.say(f"{name} exited with code {service.process.returncode}")


def _stop(stack: Stack) -> None:
    # A second Ctrl-C must not interrupt the shutdown half way and leave processes behind.
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    stack.say("stopping")
    stack.stop()
    stack.say("stopped")


@token_app.command("create")
def token_create(
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            help="A scope (repeatable or space-separated). Default: the read-only ones (`*:read`); "
            "`--scope all` for every scope.",
        ),
    ] = None,
    department: Annotated[str | None, typer.Option(help="Bind the token to one department.")] = None,
    ttl: Annotated[str, typer.Option(help="Lifetime: seconds, or a number with s, m, h or d.")] = "1h",
    sub: Annotated[
        str | None,
        typer.Option(help="Who the token is for (the `sub` claim). Default: a new `cli-<random>` each time."),
    ] = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Print a token signed with CF_AUTH_SECRET (or the secret `make run` keeps in the data dir).

    Least privilege by default: read-only scopes and a `sub` of its own, so that its
    Idempotency-Keys, rate limit and live streams are not shared with any other token.
    """
    given = [name for option in scope or [] for name in option.replace(",", " ").split()]
    scopes = list(SCOPES) if given == ["all"] else given or list(READ_SCOPES)
    unknown = [name for name in scopes if name not in SCOPES]
    if unknown:
        raise typer.BadParameter(f"unknown scope {unknown[0]!r}; one of {' '.join(SCOPES)}", param_hint="--scope")
    departments = platform_settings(os.environ).departments
    if department is not None and department not in departments:
        raise typer.BadParameter(f"unknown department {department!r}; one of {', '.join(departments)}")
    try:
        secret = auth_secret(data_dir, os.environ, create=False)
    except StackError as exc:
        raise _fail(str(exc)) from None
    subject = sub if sub is not None else f"cli-{secrets.token_hex(6)}"
    token = mint_token(secret, sub=subject, scopes=scopes, department=department, ttl_seconds=_seconds(ttl))
    typer.echo(token)


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400}


def _seconds(duration: str) -> int:
    match = _DURATION.match(duration.lower())
    if match is None or int(match.group(1)) == 0:
        raise typer.BadParameter(f"{duration!r} is not a duration such as 3600, 15m, 8h or 30d", param_hint="--ttl")
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


@app.command()
def migrate(service: ServiceOption = None, data_dir: DataDir = DEFAULT_DATA_DIR) -> None:
    """Migrate each service's database to the newest revision (safe to run again)."""
    services = _services(service)
    with _database_urls(data_dir, services) as urls:
        try:
            migrate_databases(urls)
        except Exception as exc:
            raise _fail(f"migration failed: {type(exc).__name__}: {exc}") from exc
    typer.echo(f"migrated: {', '.join(services)}")


@outbox_app.command("status")
def outbox_status(
    service: ServiceOption = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOption = False,
) -> None:
    """Events written but not yet published, and the age of the oldest, per service."""
    services = _services(service)
    with _database_urls(data_dir, services) as urls:
        backlogs = [asyncio.run(outbox_backlog(name, urls[name])) for name in services]
    for backlog in backlogs:
        typer.echo(_json_line(backlog) if as_json else _table_line(backlog))
    if any(b.error for b in backlogs):
        raise typer.Exit(1)


def _table_line(backlog: OutboxBacklog) -> str:
    if backlog.error is not None:
        return f"{backlog.service:<14} unreachable ({backlog.error})"
    oldest = "-" if backlog.oldest_seconds is None else f"{backlog.oldest_seconds:.1f}s"
    return f"{backlog.service:<14} backlog {backlog.pending:>7}   oldest {oldest}"


def _json_line(backlog: OutboxBacklog) -> str:
    return json.dumps(
        {
            "service": backlog.service,
            "backlog": backlog.pending,
            "oldest_seconds": backlog.oldest_seconds,
            "error": backlog.error,
        }
    )


@outbox_app.command("dead")
def outbox_dead(
    service: ServiceOption = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
    as_json: JsonOption = False,
) -> None:
    """Events the broker refused for good, set aside so that the events behind them flow on."""
    services = _services(service)
    with _database_urls(data_dir, services) as urls:
        found = {name: _on_database(name, urls[name], dead_events) for name in services}
    for name, events in found.items():
        for event in events:
            if as_json:
                typer.echo(json.dumps({"service": name, **dataclasses.asdict(event)}, default=str))
            else:
                typer.echo(
                    f"{name:<14} {event.event_id}  {event.event_type:<28} key {event.key!r}  {event.size} bytes  "
                    f"failed {event.failed_at:%Y-%m-%d %H:%M:%S}  {event.reason}"
                )
    if not as_json and not any(found.values()):
        typer.echo("no events set aside")


@outbox_app.command("retry")
def outbox_retry(
    event_id: Annotated[uuid.UUID, typer.Argument(help="The event's id, as `outbox dead` lists it.")],
    service: ServiceOption = None,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Queue a set-aside event for publishing again (after the events written since)."""
    services = _services(service)
    with _database_urls(data_dir, services) as urls:
        for name in services:
            if _on_database(name, urls[name], lambda conn: requeue_dead_event(conn, event_id)):
                typer.echo(f"{name}: event {event_id} queued again")
                return
    raise _fail(f"no event {event_id} is set aside in {', '.join(services)}")


def _on_database(service: str, url: str, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    """`work` on a connection to `service`'s database; one `error:` line and exit 1 if it is unreachable."""

    async def run() -> T:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
        try:
            return await work(connection)
        finally:
            await connection.close()

    try:
        return asyncio.run(run())
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        raise _fail(f"{service}'s database is unreachable ({type(exc).__name__}: {exc})") from None


@app.command()
def replay(
    department: Annotated[str, typer.Option(help="The department whose notifications go out again.")],
    since: Annotated[
        str,
        typer.Option(help="Those routed since: a duration back from now (2h, 30m, 1d12h) or an ISO 8601 time."),
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only count what would be sent.")] = False,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Send a department's notifications to notifications.<department> again, with their original event ids.

    They go through the notifications service's outbox, so its relay publishes them (now, or once it runs).
    """
    settings = platform_settings(os.environ)
    if department not in settings.departments:
        raise typer.BadParameter(
            f"unknown department {department!r}; one of {', '.join(settings.departments)}", param_hint="--department"
        )
    try:
        moment = parse_since(since, now=datetime.now(UTC))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--since") from None
    with _database_urls(data_dir, ["notifications"]) as urls:
        try:
            outcome = asyncio.run(
                replay_department(urls["notifications"], department=department, since=moment, dry_run=dry_run)
            )
        except (OSError, SQLAlchemyError) as exc:
            raise _fail(f"cannot read the notifications database ({type(exc).__name__}: {exc})") from exc
    typer.echo(_replay_summary(outcome, settings.topic(outcome.topic)))


def _replay_summary(outcome: ReplayOutcome, topic: str) -> str:
    since = outcome.since.isoformat(timespec="seconds")
    if outcome.replayed == 0:
        return f"no {outcome.department} notifications since {since}: nothing to replay"
    verb = "would replay" if outcome.dry_run else "replayed"
    lines = [f"{verb} {outcome.replayed} {outcome.department} notifications routed since {since} to {topic}:"]
    lines += [f"  {event_type:<26} {count:>7}" for event_type, count in sorted(outcome.by_type.items())]
    if outcome.dry_run:
        lines.append("dry run: nothing was written")
    else:
        lines.append("the notifications service's relay publishes them; consumers drop the event ids they already have")
    return "\n".join(lines)


@app.command()
def demo(
    base_port: Annotated[int, typer.Option(help="Port of the first service, as given to `up`.")] = DEFAULT_BASE_PORT,
    host: Annotated[str, typer.Option(help="Where the services listen.")] = "127.0.0.1",
    feedback_url: Annotated[
        str | None, typer.Option(help="The feedback service (default: --host, --base-port).")
    ] = None,
    expectations_url: Annotated[str | None, typer.Option(help="The expectations service.")] = None,
    commitments_url: Annotated[str | None, typer.Option(help="The commitments service.")] = None,
    notifications_url: Annotated[str | None, typer.Option(help="The notifications service.")] = None,
    customers_url: Annotated[str | None, typer.Option(help="The customers service.")] = None,
    token: Annotated[
        str | None,
        typer.Option(help="Bearer token (default: signed with CF_AUTH_SECRET, or the one `up` kept)."),
    ] = None,
    overdue_in: Annotated[float, typer.Option(min=1.0, help="Seconds until the demo's commitment is due.")] = 3.0,
    wait: Annotated[float, typer.Option(min=1.0, help="Seconds to wait for each stage before giving up.")] = 60.0,
    data_dir: DataDir = DEFAULT_DATA_DIR,
) -> None:
    """Play a customer's story against a running stack and print what each department received.

    A complaint, a two-person meeting, a confirmed expectation, and a commitment that goes overdue and is met late;
    every request carries one W3C trace, which the departments' events carry on. Ends with the customer's timeline
    and health.
    """
    ports = DemoTargets.on_ports(host, base_port)
    targets = DemoTargets(
        feedback=feedback_url or ports.feedback,
        expectations=expectations_url or ports.expectations,
        commitments=commitments_url or ports.commitments,
        notifications=notifications_url or ports.notifications,
        customers=customers_url or ports.customers,
    )
    try:
        bearer = token or _demo_token(data_dir)
        report = asyncio.run(
            play(
                targets,
                bearer,
                departments=platform_settings(os.environ).departments,
                overdue_in=overdue_in,
                wait_seconds=wait,
                say=typer.echo,
            )
        )
    except (DemoError, StackError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(render(report))


def _demo_token(data_dir: Path) -> str:
    if os.environ.get("CF_AUTH_SECRET"):
        return mint_token(auth_secret(data_dir, os.environ, create=False), sub="demo", scopes=SCOPES, ttl_seconds=3600)
    kept = data_dir / ADMIN_TOKEN_FILE
    if kept.exists():
        return kept.read_text().strip()
    secret = auth_secret(data_dir, os.environ, create=False)
    return mint_token(secret, sub="demo", scopes=SCOPES, ttl_seconds=3600)


if __name__ == "__main__":
    sys.exit(app())
