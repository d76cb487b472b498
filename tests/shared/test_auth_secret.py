"""`CF_AUTH_SECRET` is required: a service refuses to start, on one line and with an exit code
other than 0, without it, with one shorter than 32 bytes, or with a value this repository published.
`make run` generates one; the tooling that signs tokens checks it the same way."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from pydantic import ValidationError
from sqlalchemy.engine import URL, make_url
from typer.testing import CliRunner

from ops.cli import app
from ops.embedded import free_port
from ops.platform import SERVICES, ensure_database, migrations_of
from services.feedback.config import Settings as FeedbackSettings
from shared.auth import SCOPES, mint_token
from shared.config import check_auth_secret, settings_problem
from shared.db import asyncpg_dsn
from shared.migrations import upgrade
from tests.support.platform import TEST_SECRET, Platform

# The built-in default this repository shipped until v1.1: published, so refused.
PUBLISHED = "change-me-in-production-this-is-not-a-secret"
BAD_SECRETS = {
    "unset": (None, "CF_AUTH_SECRET: not set"),
    "empty": ("", "CF_AUTH_SECRET: empty"),
    "short": ("x" * 31, "CF_AUTH_SECRET: too short (31 bytes; at least 32"),
    "short in bytes": ("é" * 15, "CF_AUTH_SECRET: too short (30 bytes; at least 32"),
    "published": (PUBLISHED, "CF_AUTH_SECRET: a value published in this repository"),
}


def service_environment(platform: Platform, **settings: str | None) -> dict[str, str]:
    """The environment of a service process on the suite's database and broker, with `settings` on top."""
    environment = {
        **os.environ,
        "CF_KAFKA_BOOTSTRAP_SERVERS": platform.bootstrap_servers,
        "CF_TOPIC_PREFIX": platform.topic_prefix,
        "CF_LOG_JSON": "false",
        **{f"CF_{service.upper()}_DATABASE_URL": url for service, url in platform.database_urls.items()},
    }
    for name, value in settings.items():
        environment.pop(name, None)
        if value is not None:
            environment[name] = value
    return environment


def uvicorn(service: str, port: int) -> list[str]:
    """The command that serves `service`, as `make run` (ops/stack.py) and docker-compose.yml run it."""
    return [sys.executable, "-m", "uvicorn", "--factory", f"services.{service}.app:create_app", "--port", str(port)]


def refusal(command: list[str], environment: dict[str, str]) -> tuple[str, float]:
    """Run `command`, which must exit with a code other than 0 and print nothing but one line on stderr."""
    started = time.monotonic()
    ended = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)
    assert ended.returncode != 0
    assert ended.stdout == ""
    assert "Traceback" not in ended.stderr
    assert len(ended.stderr.splitlines()) == 1, ended.stderr
    return ended.stderr.strip(), time.monotonic() - started


@pytest.mark.parametrize("case", list(BAD_SECRETS))
def test_settings_without_a_strong_secret_are_refused_naming_the_reason(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, reason = BAD_SECRETS[case]
    monkeypatch.delenv("CF_AUTH_SECRET", raising=False)
    values: dict[str, Any] = {} if secret is None else {"auth_secret": secret}

    with pytest.raises(ValidationError) as refused:
        FeedbackSettings(**values)

    problem = settings_problem(refused.value, FeedbackSettings)
    assert problem.startswith(reason)
    assert "\n" not in problem
    if secret:
        assert secret not in problem


def test_a_secret_of_32_bytes_that_was_never_published_is_accepted() -> None:
    secret = secrets.token_bytes(24).hex()[:32]

    assert FeedbackSettings(auth_secret=secret).auth_secret.get_secret_value() == secret


@pytest.mark.parametrize("case", ["unset", "short", "published"])
def test_a_service_process_with_a_bad_secret_exits_at_once_with_one_line(platform: Platform, case: str) -> None:
    secret, reason = BAD_SECRETS[case]
    environment = service_environment(platform, CF_AUTH_SECRET=secret)

    line, seconds = refusal(uvicorn("feedback", free_port()), environment)

    assert line.startswith(f"feedback: refusing to start: {reason}")
    assert seconds < 30


@pytest.mark.parametrize("service", [s for s in SERVICES if s != "feedback"])
def test_every_service_refuses_to_start_without_a_secret(platform: Platform, service: str) -> None:
    line, _ = refusal(uvicorn(service, free_port()), service_environment(platform, CF_AUTH_SECRET=None))

    assert line == f"{service}: refusing to start: CF_AUTH_SECRET: not set"


def test_the_webhook_worker_refuses_a_short_secret(platform: Platform) -> None:
    command = [sys.executable, "-m", "services.notifications.webhook_worker"]

    line, _ = refusal(command, service_environment(platform, CF_AUTH_SECRET="too-short"))

    assert line.startswith("notifications: refusing to start: CF_AUTH_SECRET: too short (9 bytes")


@pytest.fixture
def own_database(platform: Platform) -> Iterator[str]:
    """A fresh, migrated feedback database on the suite's server, as a plain `postgresql://` URL."""
    suite = make_url(platform.database_urls["feedback"])
    url = suite.set(drivername="postgresql", database=f"secret_{uuid.uuid4().hex[:8]}")
    asyncio.run(ensure_database(url.render_as_string(hide_password=False)))
    upgrade(migrations_of("feedback"), url.render_as_string(hide_password=False))
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        asyncio.run(_execute(suite, f'DROP DATABASE IF EXISTS "{url.database}" WITH (FORCE)'))


async def _execute(url: URL, sql: str) -> object:
    connection = await asyncpg.connect(asyncpg_dsn(url.render_as_string(hide_password=False)))
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


def test_with_a_good_secret_and_a_plain_postgresql_url_the_service_serves(
    platform: Platform, own_database: str
) -> None:
    secret = secrets.token_urlsafe(32)
    port = free_port()
    environment = service_environment(
        platform,
        CF_AUTH_SECRET=secret,
        CF_FEEDBACK_DATABASE_URL=own_database,
        CF_TOPIC_PREFIX=f"s{uuid.uuid4().hex[:8]}.",
    )
    process = subprocess.Popen(
        uvicorn("feedback", port), env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ready = False
        while not ready and time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"{base}/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.2)
        assert ready, f"not ready (exit code {process.poll()})"
        token = mint_token(secret, sub="tester", scopes=SCOPES, ttl_seconds=60)
        body = {"customer_id": f"c-{uuid.uuid4()}", "channel": "email", "kind": "complaint", "text": "Late again."}
        created = httpx.post(f"{base}/v1/feedback", json=body, headers={"Authorization": f"Bearer {token}"})
        forged = mint_token(TEST_SECRET, sub="tester", scopes=SCOPES, ttl_seconds=60)
        refused = httpx.get(f"{base}/v1/feedback", headers={"Authorization": f"Bearer {forged}"})
        published = _outbox_drains(make_url(own_database))
    finally:
        process.terminate()
        process.wait(20)

    assert created.status_code == 201, created.text
    assert refused.status_code == 401, "a token signed with another secret"
    assert published, "the relay, on its own asyncpg connection, published the event"


def _outbox_drains(url: URL) -> bool:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if asyncio.run(_execute(url, "SELECT count(*) FROM outbox_event")) == 0:
            return True
        time.sleep(0.2)
    return False


def test_make_run_refuses_a_short_secret(tmp_path: Path) -> None:
    environment = {**os.environ, "CF_AUTH_SECRET": "short"}
    command = [str(Path(sys.executable).parent / "customer-focus"), "up", "--data-dir", str(tmp_path / "data")]

    ended = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=60, check=False)

    assert ended.returncode == 1
    assert "error: CF_AUTH_SECRET: too short (5 bytes; at least 32" in ended.stdout
    assert "Traceback" not in ended.stdout + ended.stderr
    assert not (tmp_path / "data" / "pg").exists(), "refused before anything started"


@pytest.mark.parametrize("case", ["short", "published"])
def test_token_create_refuses_a_secret_the_services_would_refuse(tmp_path: Path, case: str) -> None:
    secret, reason = BAD_SECRETS[case]

    given = CliRunner().invoke(app, ["token", "create", "--data-dir", str(tmp_path)], env={"CF_AUTH_SECRET": secret})
    (tmp_path / "auth-secret").write_text(f"{secret}\n")
    kept = CliRunner().invoke(app, ["token", "create", "--data-dir", str(tmp_path)], env={"CF_AUTH_SECRET": None})

    assert given.exit_code == 1
    assert given.output.startswith(f"error: {reason}")
    assert given.output.count("\n") == 1
    assert kept.exit_code == 1
    assert f"auth-secret: {reason.removeprefix('CF_AUTH_SECRET: ')}" in kept.output


ROOT = Path(__file__).resolve().parents[2]
# A secret written into a file: `…SECRET = "…"`, `secret: "…"`, `SecretStr("…")` or `CF_AUTH_SECRET=…`.
SECRET_LITERAL = re.compile(
    r"""(?ix) (?: secret\w*["']?\s*[=:]\s*["'] | secretstr\(\s*["'] ) ([^\s"']{32,})["']
    | CF_AUTH_SECRET=([^\s"'$]{32,})"""
)


def test_every_secret_written_in_this_repository_is_refused() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True)
    written = []
    for name in tracked.stdout.split("\0"):
        path = ROOT / name
        if not name or path.suffix == ".lock" or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        written += [(name, match.group(1) or match.group(2)) for match in SECRET_LITERAL.finditer(text)]
    written.append(("the test itself", PUBLISHED))

    accepted = [name for name, secret in written if _accepted(secret)]
    assert accepted == [], "add the SHA-256 of their secrets to shared.config.PUBLISHED_SECRETS"


def _accepted(secret: str) -> bool:
    try:
        check_auth_secret(secret)
    except ValueError:
        return False
    return True
