"""Database URLs written `postgresql://`, `postgres://` or `postgresql+asyncpg://`, over TCP or a
socket (`?host=<folder>`), reach the database everywhere a URL is read: settings and the engine,
asyncpg's DSN, the migrations and the CLI. Anything else is refused, naming the setting.

The suite's PostgreSQL listens on one of the two (the embedded one on a socket, a
`CF_TEST_POSTGRES_URL` server usually on TCP); a byte relay gives it the other, so that every form
reaches the same real server in every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import socket
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy import text
from sqlalchemy.engine import make_url
from typer.testing import CliRunner

from ops.cli import app
from ops.platform import ensure_database, migrations_of
from services.feedback.config import Settings as FeedbackSettings
from shared.config import PlatformSettings, load_settings, settings_problem
from shared.db import asyncpg_dsn, create_engine
from shared.migrations import upgrade, version_table
from tests.support.platform import TEST_SECRET, Platform

SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
WAYS = ("tcp", "socket")


class Relay:
    """Copies the bytes of each connection accepted on `listener` to a new connection from `connect`."""

    def __init__(self, listener: socket.socket, connect: Callable[[], socket.socket]) -> None:
        self._listener = listener
        self._connect = connect
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        listener.settimeout(0.2)
        threading.Thread(target=self._accept, name="relay", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            upstream = self._connect()
            self._sockets += [client, upstream]
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=_copy, args=(source, target), daemon=True).start()

    def stop(self) -> None:
        self._stopped.set()
        self._listener.close()
        for sock in self._sockets:
            sock.close()


def _copy(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


def _unix_connection(path: str) -> Callable[[], socket.socket]:
    def connect() -> socket.socket:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(path)
        return sock

    return connect


@dataclass(frozen=True)
class Server:
    """The suite's PostgreSQL, reachable both over TCP and on a socket in `folder`."""

    user: str
    password: str | None
    host: str
    port: int
    folder: str
    socket_port: int
    relay: Relay

    def url(self, scheme: str, way: str, database: str, query: str = "") -> str:
        login = self.user if self.password is None else f"{self.user}:{self.password}"
        if way == "tcp":
            return f"{scheme}://{login}@{self.host}:{self.port}/{database}" + (f"?{query}" if query else "")
        socket = f"?host={self.folder}&port={self.socket_port}"
        return f"{scheme}://{login}@/{database}{socket}" + (f"&{query}" if query else "")


@pytest.fixture(scope="module")
def server(platform: Platform) -> Iterator[Server]:
    suite = make_url(platform.database_urls["feedback"])
    user, password = suite.username or "postgres", suite.password
    socket_folder = suite.query.get("host")
    if isinstance(socket_folder, str):
        # A server on a socket: relay TCP to it.
        socket_port = suite.port or 5432
        listener = socket.create_server(("127.0.0.1", 0))
        relay = Relay(listener, _unix_connection(f"{socket_folder}/.s.PGSQL.{socket_port}"))
        try:
            yield Server(user, password, "127.0.0.1", listener.getsockname()[1], socket_folder, socket_port, relay)
        finally:
            relay.stop()
        return
    # A server on TCP: relay a socket to it, in a folder of its own, named as PostgreSQL names it.
    assert suite.host is not None
    host, port = suite.host, suite.port or 5432
    folder = tempfile.mkdtemp(prefix="cf-socket-")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(f"{folder}/.s.PGSQL.{port}")
    listener.listen()
    relay = Relay(listener, lambda: socket.create_connection((host, port)))
    try:
        yield Server(user, password, host, port, folder, port, relay)
    finally:
        relay.stop()
        shutil.rmtree(folder, ignore_errors=True)


def feedback_database(platform: Platform) -> str:
    name = make_url(platform.database_urls["feedback"]).database
    assert name is not None
    return name


async def _database_of_engine(url: str) -> str:
    engine = create_engine(url, pool_size=1)
    try:
        async with engine.connect() as connection:
            return str((await connection.execute(text("SELECT current_database()"))).scalar_one())
    finally:
        await engine.dispose()


async def _database_of_dsn(url: str) -> str:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return str(await connection.fetchval("SELECT current_database()"))
    finally:
        await connection.close()


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("scheme", SCHEMES)
async def test_settings_turn_every_form_into_the_url_the_engine_and_asyncpg_connect_with(
    server: Server, platform: Platform, scheme: str, way: str
) -> None:
    database = feedback_database(platform)
    given = server.url(scheme, way, database)

    settings = FeedbackSettings(database_url=given, auth_secret=TEST_SECRET)

    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert await _database_of_engine(settings.database_url) == database
    assert await _database_of_dsn(settings.database_url) == database
    assert await _database_of_dsn(given) == database, "asyncpg_dsn takes every form too"


async def test_a_url_from_the_environment_is_read_in_any_form(
    server: Server, platform: Platform, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = feedback_database(platform)
    monkeypatch.setenv("CF_FEEDBACK_DATABASE_URL", server.url("postgres", "tcp", database))
    monkeypatch.setenv("CF_AUTH_SECRET", TEST_SECRET)

    settings = FeedbackSettings()

    assert settings.database_url == server.url("postgresql+asyncpg", "tcp", database)
    assert await _database_of_engine(settings.database_url) == database


@pytest.mark.parametrize("way", WAYS)
async def test_libpq_sslmode_is_understood_by_the_engine_and_by_asyncpg(
    server: Server, platform: Platform, way: str
) -> None:
    database = feedback_database(platform)
    given = server.url("postgresql", way, database, "sslmode=prefer")

    settings = FeedbackSettings(database_url=given, auth_secret=TEST_SECRET)

    assert "ssl=prefer" in settings.database_url
    assert "sslmode" not in settings.database_url
    assert await _database_of_engine(settings.database_url) == database
    assert await _database_of_dsn(settings.database_url) == database


@pytest.mark.parametrize("way", WAYS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_migrations_run_with_every_form(server: Server, scheme: str, way: str) -> None:
    database = f"url_form_{uuid.uuid4().hex[:8]}"
    url = server.url(scheme, way, database)
    asyncio.run(ensure_database(url))
    try:
        upgrade(migrations_of("feedback"), url)

        rows = asyncio.run(_fetch(url, f"SELECT version_num FROM {version_table('feedback')}"))
        assert len(rows) == 1
        assert rows[0][0].startswith("feedback_")
    finally:
        asyncio.run(_drop(server, database))


def test_the_cli_migrates_a_database_given_as_postgres_url(server: Server) -> None:
    database = f"url_cli_{uuid.uuid4().hex[:8]}"
    url = server.url("postgres", "tcp", database)
    try:
        result = CliRunner().invoke(app, ["migrate", "--service", "feedback"], env={"CF_FEEDBACK_DATABASE_URL": url})

        assert result.exit_code == 0, result.output
        rows = asyncio.run(_fetch(url, f"SELECT version_num FROM {version_table('feedback')}"))
        assert rows
    finally:
        asyncio.run(_drop(server, database))


BAD_URLS = [
    "mysql://root:hunter2@db:3306/feedback",
    "postgresql+psycopg://feedback:hunter2@db:5432/feedback",
    "sqlite:///feedback.db",
    "feedback:hunter2@db:5432/feedback",
]


@pytest.mark.parametrize("url", BAD_URLS)
def test_any_other_url_is_refused_naming_the_setting_and_never_the_password(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        FeedbackSettings(database_url=url, auth_secret=TEST_SECRET)

    problem = settings_problem(refused.value, FeedbackSettings)
    assert problem.startswith("CF_FEEDBACK_DATABASE_URL: a database URL must start with postgresql://")
    assert "hunter2" not in problem
    with pytest.raises(ValidationError, match="must start with"):
        PlatformSettings(database_url=url, auth_secret=TEST_SECRET)
    with pytest.raises(ValueError, match="must start with"):
        upgrade(migrations_of("feedback"), url)


def test_a_service_given_a_wrong_url_says_so_on_one_line_and_exits(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CF_FEEDBACK_DATABASE_URL", BAD_URLS[0])
    monkeypatch.setenv("CF_AUTH_SECRET", TEST_SECRET)

    with pytest.raises(SystemExit) as exited:
        load_settings(FeedbackSettings)

    assert exited.value.code != 0
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert error.startswith("feedback: refusing to start: CF_FEEDBACK_DATABASE_URL: a database URL must start with")


def test_the_cli_refuses_a_wrong_url_on_one_line() -> None:
    result = CliRunner().invoke(
        app, ["migrate", "--service", "feedback"], env={"CF_FEEDBACK_DATABASE_URL": BAD_URLS[0]}
    )

    assert result.exit_code == 1
    assert result.output.startswith("error: CF_FEEDBACK_DATABASE_URL: a database URL must start with")
    assert "hunter2" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


async def _fetch(url: str, sql: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(asyncpg_dsn(url))
    try:
        return list(await connection.fetch(sql))
    finally:
        await connection.close()


async def _drop(server: Server, database: str) -> None:
    connection = await asyncpg.connect(asyncpg_dsn(server.url("postgresql", "tcp", "postgres")))
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()
