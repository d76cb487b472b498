"""The platform as the CLI operates it, local or deployed: settings, the secret, database URLs, migrations.

Nothing here imports the `ops` dependency group, so that the service image's
`customer-focus migrate`, `outbox`, `token` and `replay` run without it; only
the fallback to the embedded PostgreSQL (no `CF_<SERVICE>_DATABASE_URL`) needs
it, and says so. `ops.stack`, the local launcher, needs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from pydantic import ValidationError
from sqlalchemy.engine import make_url

from ops.embedded import EmbeddedPostgres, require_ops_group
from shared.config import PlatformSettings, asyncpg_url, check_auth_secret, settings_problem
from shared.db import asyncpg_dsn
from shared.migrations import upgrade

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = REPO_ROOT / ".data"
DEFAULT_BASE_PORT = 8001
DEFAULT_BROKER_PORT = 9092
SECRET_FILE = "auth-secret"
ADMIN_TOKEN_FILE = "admin-token"
# The services, in the order the stack starts them (and gives them ports).
SERVICES = ("feedback", "expectations", "commitments", "notifications", "customers")


def migrations_of(service: str) -> str:
    """The Alembic script location of `service`'s migrations."""
    return f"services.{service}:migrations"


class StackError(RuntimeError):
    """The stack could not start, or a part of it failed."""


def database_url_variable(service: str) -> str:
    return f"CF_{service.upper()}_DATABASE_URL"


def configured_database_urls(environ: Mapping[str, str], services: Sequence[str]) -> dict[str, str]:
    """The services whose database `CF_<SERVICE>_DATABASE_URL` names, and those URLs (as `asyncpg_url` writes them)."""
    urls = {}
    for service in services:
        variable = database_url_variable(service)
        if environ.get(variable):
            try:
                urls[service] = asyncpg_url(environ[variable])
            except ValueError as exc:
                raise StackError(f"{variable}: {exc}") from None
    return urls


def platform_settings(environ: Mapping[str, str], **overrides: Any) -> PlatformSettings:
    """Platform settings from `environ` (not necessarily `os.environ`), then `overrides`.

    `CF_AUTH_SECRET` is not read: the tooling signs with `auth_secret(...)`, which checks it, and
    only reads the other settings here.
    """
    values: dict[str, Any] = {
        name: environ[f"CF_{name.upper()}"]
        for name in PlatformSettings.model_fields
        if f"CF_{name.upper()}" in environ and name != "auth_secret"
    }
    values["auth_secret"] = secrets.token_urlsafe(32)
    values.update(overrides)
    try:
        return PlatformSettings(**values)
    except ValidationError as exc:
        raise StackError(settings_problem(exc, PlatformSettings)) from None


def auth_secret(data_dir: Path, environ: Mapping[str, str], *, create: bool) -> str:
    """`CF_AUTH_SECRET`, else the one kept in `<data_dir>/auth-secret` (made once, never committed).

    A StackError if it is too short or a published value: the services would refuse it.
    """
    given = environ.get("CF_AUTH_SECRET")
    if given:
        return _checked_secret(given, "CF_AUTH_SECRET")
    path = data_dir / SECRET_FILE
    if path.exists():
        return _checked_secret(path.read_text().strip(), str(path))
    if not create:
        raise StackError(f"no CF_AUTH_SECRET is set and {path} does not exist yet (`make run` creates it)")
    data_dir.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(48)
    write_private(path, secret + "\n")
    return secret


def _checked_secret(secret: str, source: str) -> str:
    try:
        return check_auth_secret(secret)
    except ValueError as exc:
        raise StackError(f"{source}: {exc}") from None


def write_private(path: Path, content: str) -> None:
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(content)


async def ensure_database(url: str) -> None:
    """Create the database `url` names on its server if it does not exist yet."""
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=10)
    except asyncpg.InvalidCatalogNameError:
        parsed = make_url(url)
        maintenance = parsed.set(database="postgres").render_as_string(hide_password=False)
        admin = await asyncpg.connect(asyncpg_dsn(maintenance), timeout=10)
        try:
            name = parsed.database or ""
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
    else:
        await connection.close()


@contextlib.contextmanager
def database_urls(
    data_dir: Path, environ: Mapping[str, str], services: Sequence[str] = SERVICES
) -> Iterator[dict[str, str]]:
    """Each service's database URL: from `CF_<SERVICE>_DATABASE_URL`, else the embedded
    PostgreSQL in `data_dir` (started for the duration if `make run` is not running it)."""
    urls = configured_database_urls(environ, services)
    missing = [s for s in services if s not in urls]
    if not missing:
        yield urls
        return
    require_ops_group(f"no {database_url_variable(missing[0])} is set, and the embedded PostgreSQL")
    postgres = EmbeddedPostgres(data_dir.resolve() / "pg")
    already_running = postgres.running()
    postgres.start()
    try:
        for service in missing:
            postgres.create_database(service)
            urls[service] = postgres.url(service)
        yield urls
    finally:
        if not already_running:
            postgres.stop()


@dataclass(frozen=True)
class OutboxBacklog:
    """Events a service has written but not yet published."""

    service: str
    pending: int | None
    oldest_seconds: float | None
    error: str | None = None


_BACKLOG = "SELECT count(*), extract(epoch FROM now() - min(created_at))::float8 FROM outbox_event"


async def outbox_backlog(service: str, url: str) -> OutboxBacklog:
    try:
        connection = await asyncpg.connect(asyncpg_dsn(url), timeout=5)
        try:
            pending, oldest = await connection.fetchrow(_BACKLOG)
        finally:
            await connection.close()
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        return OutboxBacklog(service, None, None, f"{type(exc).__name__}: {exc}")
    return OutboxBacklog(service, int(pending), None if oldest is None else float(oldest))


def migrate_databases(urls: Mapping[str, str]) -> None:
    for service, url in urls.items():
        asyncio.run(ensure_database(url))
        upgrade(migrations_of(service), url)
