"""The `customer-focus` commands other than `up`, against the suite's real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ops.cli import app
from ops.platform import SERVICES, migrations_of
from shared.auth import SCOPES, TokenVerifier
from shared.db import asyncpg_dsn
from shared.migrations import alembic_config, version_table
from tests.support.platform import Platform

runner = CliRunner()
SECRET = secrets.token_urlsafe(32)


def database_variables(urls: dict[str, str]) -> dict[str, str | None]:
    return {f"CF_{service.upper()}_DATABASE_URL": url for service, url in urls.items()}


async def _execute(url: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def query(url: str, sql: str) -> list[asyncpg.Record]:
    return asyncio.run(_execute(url, sql))


@pytest.fixture
def new_databases(platform: Platform) -> Iterator[dict[str, str]]:
    """URLs of per-test databases that do not exist yet on the suite's server."""
    run_id = uuid.uuid4().hex[:8]
    urls = {
        s: make_url(platform.database_urls[s]).set(database=f"cli_{s}_{run_id}").render_as_string(hide_password=False)
        for s in SERVICES
    }
    yield urls
    for url in urls.values():
        name = make_url(url).database
        server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
        query(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_exists(url: str) -> bool:
    server = make_url(url).set(database="postgres").render_as_string(hide_password=False)
    return bool(query(server, f"SELECT 1 FROM pg_database WHERE datname = '{make_url(url).database}'"))


def head_revision(service: str, url: str) -> str:
    head = ScriptDirectory.from_config(alembic_config(migrations_of(service), url)).get_current_head()
    assert head is not None
    return head


def test_token_create_prints_a_token_signed_with_the_secret_in_the_data_dir(tmp_path: Path) -> None:
    (tmp_path / "auth-secret").write_text(SECRET + "\n")

    scopes = ["--scope", "feedback:read", "--scope", "commitments:read commitments:write"]
    claims = ["--department", "sales", "--ttl", "15m", "--sub", "alice"]
    command = ["token", "create", *scopes, *claims, "--data-dir", str(tmp_path)]

    result = runner.invoke(app, command, env={"CF_AUTH_SECRET": None})

    assert result.exit_code == 0, result.output
    principal = TokenVerifier(SECRET).verify(result.stdout.strip())
    assert principal.sub == "alice"
    assert principal.scopes == {"feedback:read", "commitments:read", "commitments:write"}
    assert principal.department == "sales"
    assert 14 * 60 < principal.expires_at - time.time() <= 15 * 60


def test_token_create_prefers_cf_auth_secret_and_defaults_to_read_only_scopes_and_a_fresh_sub(
    tmp_path: Path,
) -> None:
    (tmp_path / "auth-secret").write_text(secrets.token_urlsafe(32) + "\n")

    results = [
        runner.invoke(app, ["token", "create", "--data-dir", str(tmp_path)], env={"CF_AUTH_SECRET": SECRET})
        for _ in range(2)
    ]

    assert [r.exit_code for r in results] == [0, 0], [r.output for r in results]
    first, second = (TokenVerifier(SECRET).verify(r.stdout.strip()) for r in results)
    assert first.scopes == {
        "feedback:read",
        "expectations:read",
        "commitments:read",
        "notifications:read",
        "customers:read",
    }
    assert first.department is None
    assert first.sub.startswith("cli-")
    assert second.sub.startswith("cli-")
    assert first.sub != second.sub  # nothing keyed by `sub` (Idempotency-Keys, rate limit, streams) is shared


def test_token_create_gives_every_scope_only_when_asked() -> None:
    result = runner.invoke(app, ["token", "create", "--scope", "all", "--sub", "ops"], env={"CF_AUTH_SECRET": SECRET})

    assert result.exit_code == 0, result.output
    principal = TokenVerifier(SECRET).verify(result.stdout.strip())
    assert principal.scopes == set(SCOPES)
    assert principal.sub == "ops"


def test_token_create_without_any_secret_says_where_one_comes_from(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "create", "--data-dir", str(tmp_path)], env={"CF_AUTH_SECRET": None})

    assert result.exit_code == 1
    assert "CF_AUTH_SECRET" in result.output
    assert not (tmp_path / "auth-secret").exists()


def test_token_create_rejects_an_unknown_scope() -> None:
    result = runner.invoke(app, ["token", "create", "--scope", "feedback:delete"], env={"CF_AUTH_SECRET": SECRET})

    assert result.exit_code == 2
    assert "feedback:delete" in result.output


def test_token_create_rejects_an_unknown_department() -> None:
    result = runner.invoke(
        app, ["token", "create", "--department", "finance"], env={"CF_AUTH_SECRET": SECRET, "CF_DEPARTMENTS": None}
    )

    assert result.exit_code == 2
    assert "finance" in result.output


def test_token_create_rejects_a_ttl_that_is_not_a_duration() -> None:
    result = runner.invoke(app, ["token", "create", "--ttl", "soon"], env={"CF_AUTH_SECRET": SECRET})

    assert result.exit_code == 2
    assert "soon" in result.output


def test_migrate_creates_and_migrates_every_database_and_is_idempotent(new_databases: dict[str, str]) -> None:
    environment = database_variables(new_databases)

    first = runner.invoke(app, ["migrate"], env=environment)
    second = runner.invoke(app, ["migrate"], env=environment)

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    for service, url in new_databases.items():
        versions = query(url, f"SELECT version_num FROM {version_table(service)}")
        assert [row["version_num"] for row in versions] == [head_revision(service, url)]


def test_migrate_one_service_leaves_the_other_databases_alone(new_databases: dict[str, str]) -> None:
    result = runner.invoke(app, ["migrate", "--service", "feedback"], env=database_variables(new_databases))

    assert result.exit_code == 0, result.output
    assert query(new_databases["feedback"], "SELECT count(*) AS n FROM outbox_event")[0]["n"] == 0
    assert [database_exists(new_databases[s]) for s in ("expectations", "commitments", "notifications")] == [
        False,
        False,
        False,
    ]


def test_migrate_rejects_an_unknown_service() -> None:
    result = runner.invoke(app, ["migrate", "--service", "billing"])

    assert result.exit_code == 2
    assert "billing" in result.output


def add_pending_events(url: str, count: int, age_seconds: int) -> None:
    values = ", ".join(
        f"('{uuid.uuid4()}', 'commitments.events', 'c-{i}', 'commitment.created', '\\x7b7d'::bytea,"
        f" now() - interval '{age_seconds} seconds')"
        for i in range(count)
    )
    query(url, f"INSERT INTO outbox_event (event_id, topic, key, event_type, value, created_at) VALUES {values}")


def test_outbox_status_prints_the_backlog_and_oldest_age_of_every_service(new_databases: dict[str, str]) -> None:
    environment = database_variables(new_databases)
    assert runner.invoke(app, ["migrate"], env=environment).exit_code == 0
    add_pending_events(new_databases["commitments"], 3, age_seconds=90)

    result = runner.invoke(app, ["outbox", "status", "--json"], env=environment)

    assert result.exit_code == 0, result.output
    rows = {row["service"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert list(rows) == list(SERVICES)
    assert rows["commitments"]["backlog"] == 3
    assert 90 <= rows["commitments"]["oldest_seconds"] < 150
    assert [rows[s]["backlog"] for s in ("feedback", "expectations", "notifications")] == [0, 0, 0]
    assert [rows[s]["oldest_seconds"] for s in ("feedback", "expectations", "notifications")] == [None, None, None]


def test_outbox_status_table_names_every_service(new_databases: dict[str, str]) -> None:
    environment = database_variables(new_databases)
    assert runner.invoke(app, ["migrate"], env=environment).exit_code == 0
    add_pending_events(new_databases["feedback"], 2, age_seconds=5)

    result = runner.invoke(app, ["outbox", "status"], env=environment)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == list(SERVICES)
    assert lines[0].split()[1:3] == ["backlog", "2"]


def test_outbox_status_reports_an_unreachable_database_and_fails(new_databases: dict[str, str]) -> None:
    environment = database_variables(new_databases)
    assert runner.invoke(app, ["migrate"], env=environment).exit_code == 0
    environment["CF_NOTIFICATIONS_DATABASE_URL"] = "postgresql+asyncpg://postgres@127.0.0.1:1/notifications"

    result = runner.invoke(app, ["outbox", "status"], env=environment)

    assert result.exit_code == 1
    assert "notifications" in result.stdout
    assert "unreachable" in result.stdout
