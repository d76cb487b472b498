"""The whole platform on one machine: what `make run` starts, and what tests drive.

`Stack` starts an embedded PostgreSQL (one database per service) and an
embedded Tansu broker unless `CF_<SERVICE>_DATABASE_URL` / `CF_KAFKA_BOOTSTRAP_SERVERS`
name real ones, migrates every database, creates the contract's topics, then
runs each service as its own uvicorn process (in its own process group, so a
Ctrl-C reaches the stack first and the stack stops things in order). Every
process's log is streamed with its name in front. Benchmarks and
fault-injection tests use the same class to kill or restart a service, pause
the broker, or stop PostgreSQL under load.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import asyncpg
import httpx
import psutil
from aiokafka.errors import KafkaError

from ops.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from ops.platform import (
    ADMIN_TOKEN_FILE,
    DEFAULT_BASE_PORT,
    DEFAULT_BROKER_PORT,
    DEFAULT_DATA_DIR,
    REPO_ROOT,
    SERVICES,
    StackError,
    auth_secret,
    configured_database_urls,
    database_url_variable,
    ensure_database,
    migrations_of,
    platform_settings,
    write_private,
)
from shared.auth import READ_SCOPES, SCOPES, mint_token
from shared.kafka import ensure_topics
from shared.migrations import upgrade

T = TypeVar("T")
PROCESSES_FILE = "processes.json"
_PR_SET_PDEATHSIG = 1


def dies_with_its_parent() -> Callable[[], None] | None:
    """A `preexec_fn` after which Linux SIGKILLs the child when the thread that started it ends,
    so a stack killed with SIGKILL takes its broker and services with it."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


Launch = Callable[[Callable[[], T]], T]


def _launch_here(start: Callable[[], T]) -> T:
    return start()


def port_is_free(host: str, port: int) -> bool:
    """Nothing listens on `port` (connections of a killed server still in TIME_WAIT do not count)."""
    with socket.socket() as sock:
        # As uvicorn binds, so that a service restarted right after a crash finds its port free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


class LogPrinter:
    """Writes lines from many processes to one stream, each with its name in front."""

    def __init__(self, out: TextIO, *, width: int = 13) -> None:
        self._out = out
        self._width = width
        self._lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        with self._lock:
            self._out.write(f"{name:<{self._width}} | {text.rstrip()}\n")
            self._out.flush()

    def block(self, text: str) -> None:
        with self._lock:
            self._out.write(text)
            self._out.flush()

    def follow(self, name: str, stream: IO[bytes]) -> threading.Thread:
        """Print every line of `stream` (a pipe) until it closes."""

        def pump() -> None:
            with contextlib.suppress(ValueError, OSError):
                for raw in iter(stream.readline, b""):
                    self.line(name, raw.decode("utf-8", "replace"))

        thread = threading.Thread(target=pump, name=f"log-{name}", daemon=True)
        thread.start()
        return thread

    def tail(self, name: str, path: Path, stop: threading.Event) -> threading.Thread:
        """Print lines appended to `path` (PostgreSQL's log file) until `stop` is set."""

        def pump() -> None:
            position = path.stat().st_size if path.exists() else 0
            while not stop.wait(0.25):
                with contextlib.suppress(OSError), path.open("rb") as file:
                    file.seek(position)
                    for raw in file:
                        self.line(name, raw.decode("utf-8", "replace"))
                    position = file.tell()

        thread = threading.Thread(target=pump, name=f"log-{name}", daemon=True)
        thread.start()
        return thread


@dataclass(frozen=True)
class StackOptions:
    """Where the stack keeps its data and which ports it uses (0 = any free port)."""

    data_dir: Path = DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    base_port: int = DEFAULT_BASE_PORT
    broker_port: int = DEFAULT_BROKER_PORT
    services: Sequence[str] = SERVICES
    ready_timeout_seconds: float = 90.0
    stop_timeout_seconds: float = 10.0
    token_ttl_seconds: int = 7 * 86_400
    # Extra environment for every service, then for one service (benchmarks, fault tests).
    environment: Mapping[str, str] = field(default_factory=dict)
    service_environment: Mapping[str, Mapping[str, str]] = field(default_factory=dict)


@dataclass
class ServiceProcess:
    """One service running under uvicorn in its own process group."""

    name: str
    port: int
    host: str
    environment: dict[str, str]
    process: subprocess.Popen[bytes] | None = None
    # Where the process is started from: its parent-death signal follows that thread.
    launch: Launch[subprocess.Popen[bytes]] = _launch_here

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, printer: LogPrinter) -> None:
        if not port_is_free(self.host, self.port):
            raise StackError(f"port {self.port} for {self.name} is in use (choose another with --base-port)")
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"services.{self.name}.app:create_app",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "5",
        ]
        self.process = self.launch(
            lambda: subprocess.Popen(
                command,
                cwd=REPO_ROOT,
                env=self.environment,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=dies_with_its_parent(),
            )
        )
        assert self.process.stdout is not None
        printer.follow(self.name, self.process.stdout)

    def signal(self, signum: int) -> None:
        """Send `signum` to the service's whole process group."""
        if self.running():
            assert self.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signum)

    def wait(self, timeout: float) -> bool:
        """Wait for the process to end; True if it did."""
        if self.process is None:
            return True
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def kill(self) -> None:
        """SIGKILL at once, as a crash would."""
        self.signal(signal.SIGKILL)
        self.wait(10)

    def stop(self, timeout: float) -> None:
        """SIGTERM, then SIGKILL if it has not ended within `timeout` seconds."""
        self.signal(signal.SIGTERM)
        if not self.wait(timeout):
            self.kill()


class Stack:
    """The platform's processes: embedded PostgreSQL and broker (unless external) and the services."""

    def __init__(
        self,
        options: StackOptions | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.options = options or StackOptions()
        self.data_dir = self.options.data_dir.resolve()
        self.environ = dict(os.environ if environ is None else environ)
        self.printer = LogPrinter(out or sys.stdout)
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.services: dict[str, ServiceProcess] = {}
        # Each service's URL, known before any starts: a service may need another's that starts after it.
        self.planned_urls: dict[str, str] = {}
        self.database_urls: dict[str, str] = {}
        self.bootstrap_servers = ""
        self.secret = ""
        self.token = ""
        self.ready_after_seconds = 0.0
        self._tail_stop = threading.Event()
        self._stopped = False
        self._remembered = False
        # Children are started from this one long-lived thread (see `dies_with_its_parent`), never
        # from a caller's short-lived thread, whose end would kill them.
        self._launcher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stack-launcher")

    # -- whole stack ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything and wait until every service answers /readyz with 200."""
        started = time.monotonic()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.stop_leftovers()
        self.secret = auth_secret(self.data_dir, self.environ, create=True)
        self.start_databases()
        self.migrate()
        self.start_broker()
        self.remember_processes()
        self.create_topics()
        self.start_services()
        self.remember_processes()
        self.wait_ready()
        self.ready_after_seconds = time.monotonic() - started
        self.token = self.admin_token()
        write_private(self.data_dir / ADMIN_TOKEN_FILE, self.token + "\n")

    def stop(self) -> None:
        """Stop the services (SIGTERM, then SIGKILL), the broker, then PostgreSQL. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for service in self.services.values():
            service.signal(signal.SIGTERM)
        deadline = time.monotonic() + self.options.stop_timeout_seconds
        for service in self.services.values():
            if not service.wait(max(0.0, deadline - time.monotonic())):
                self.say(f"{service.name} did not stop in time; killing it")
                service.kill()
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self._tail_stop.set()
        if self._remembered:
            (self.data_dir / PROCESSES_FILE).unlink(missing_ok=True)
        self._launcher.shutdown(wait=False)

    def launch(self, start: Callable[[], T]) -> T:
        """Run `start` (which starts a child process) on the stack's launcher thread."""
        return self._launcher.submit(start).result()

    def remember_processes(self) -> None:
        """Note the broker's and services' pids in the data dir, for `stop_leftovers` after a hard kill."""
        started = []
        for pid in self._child_pids():
            with contextlib.suppress(psutil.NoSuchProcess):
                started.append({"pid": pid, "create_time": psutil.Process(pid).create_time()})
        owner = {"pid": os.getpid(), "create_time": psutil.Process().create_time()}
        (self.data_dir / PROCESSES_FILE).write_text(json.dumps({"owner": owner, "processes": started}))
        self._remembered = True

    def stop_leftovers(self) -> None:
        """Stop what an earlier stack on this data dir left running when it was killed (SIGKILL, OOM)."""
        path = self.data_dir / PROCESSES_FILE
        if not path.exists():
            return
        noted = json.loads(path.read_text())
        owner = _same_process(noted["owner"])
        if owner is not None and owner.pid != os.getpid():
            raise StackError(f"another stack (pid {owner.pid}) runs on {self.data_dir}; stop it first")
        leftovers = [p for p in map(_same_process, noted["processes"]) if p is not None]
        for process in leftovers:
            self.say(f"stopping pid {process.pid} ({process.name()}), left running by an earlier stack")
            process.terminate()
        _, still_running = psutil.wait_procs(leftovers, timeout=self.options.stop_timeout_seconds)
        for process in still_running:
            process.kill()
        psutil.wait_procs(still_running, timeout=5)
        path.unlink()

    def __enter__(self) -> Stack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def say(self, text: str) -> None:
        self.printer.line("stack", text)

    # -- PostgreSQL ----------------------------------------------------------------------------

    def start_databases(self) -> None:
        """Embedded PostgreSQL for every service without `CF_<SERVICE>_DATABASE_URL`; create the databases."""
        external = configured_database_urls(self.environ, SERVICES)
        embedded = [s for s in self.options.services if s not in external]
        if embedded:
            self.postgres = EmbeddedPostgres(self.data_dir / "pg")
            self.say(f"starting embedded PostgreSQL in {self.postgres.data_dir}")
            self.postgres.start()
            self._tail_stop.clear()
            self.printer.tail("postgres", self.postgres.data_dir / "log", self._tail_stop)
            for service in embedded:
                self.postgres.create_database(service)
                external[service] = self.postgres.url(service)
        for service in self.options.services:
            if service not in embedded:
                try:
                    asyncio.run(ensure_database(external[service]))
                except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                    raise StackError(f"cannot reach {service}'s database ({type(exc).__name__}: {exc})") from exc
        self.database_urls = {s: external[s] for s in self.options.services}

    def migrate(self) -> None:
        for service in self.options.services:
            upgrade(migrations_of(service), self.database_urls[service])
        self.say(f"migrated {', '.join(self.options.services)}")

    def stop_postgres(self) -> None:
        """Stop the embedded PostgreSQL (`pg_ctl stop -m fast`)."""
        self._require(self.postgres, "PostgreSQL").stop()

    def start_postgres(self) -> None:
        self._require(self.postgres, "PostgreSQL").start()

    # -- broker --------------------------------------------------------------------------------

    def start_broker(self) -> None:
        """The embedded broker, unless `CF_KAFKA_BOOTSTRAP_SERVERS` names one."""
        given = self.environ.get("CF_KAFKA_BOOTSTRAP_SERVERS")
        if given:
            self.bootstrap_servers = given
            return
        port = self.options.broker_port
        if port == 0:
            port = self.broker.port if self.broker is not None else free_port()
        elif not port_is_free(self.options.host, port):
            raise StackError(f"port {port} for the broker is in use (choose another with --broker-port, 0 for any)")
        broker = self.broker = EmbeddedBroker(port)
        self.launch(lambda: broker.start(stdout=subprocess.PIPE, preexec_fn=dies_with_its_parent()))
        assert self.broker.process is not None
        assert self.broker.process.stdout is not None
        self.printer.follow("broker", self.broker.process.stdout)
        self.bootstrap_servers = self.broker.bootstrap_servers
        self.say(f"embedded broker (Tansu) on {self.bootstrap_servers}")

    def create_topics(self) -> None:
        settings = platform_settings(self.environ, kafka_bootstrap_servers=self.bootstrap_servers)
        try:
            created = asyncio.run(ensure_topics(settings))
        except KafkaError as exc:
            raise StackError(f"cannot reach Kafka at {self.bootstrap_servers} ({type(exc).__name__}: {exc})") from exc
        if created:
            self.say(f"created {len(created)} topics")

    def pause_broker(self) -> None:
        """SIGSTOP the embedded broker: connections hang, as with a network partition."""
        self._broker_signal(signal.SIGSTOP)

    def resume_broker(self) -> None:
        self._broker_signal(signal.SIGCONT)

    def restart_broker(self) -> None:
        """Stop and start the embedded broker on the same port (it comes back empty) and recreate the topics."""
        broker = self._require(self.broker, "broker")
        broker.stop()
        self.start_broker()
        self.remember_processes()
        self.create_topics()

    def _broker_signal(self, signum: int) -> None:
        broker = self._require(self.broker, "broker")
        if broker.process is None or broker.process.poll() is not None:
            raise StackError("the embedded broker is not running")
        os.kill(broker.process.pid, signum)

    # -- services ------------------------------------------------------------------------------

    def service_environment(self, service: str) -> dict[str, str]:
        """The environment a service process gets: the caller's, then the stack's settings."""
        environment = {
            **self.environ,
            "CF_KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "CF_AUTH_SECRET": self.secret,
            database_url_variable(service): self.database_urls[service],
            **self.options.environment,
            **self.options.service_environment.get(service, {}),
        }
        environment.setdefault("CF_LOG_JSON", "false")
        if service == "notifications":
            # Local webhook receivers live on loopback; `make run` allows them.
            environment.setdefault("CF_WEBHOOK_ALLOW_PRIVATE", "true")
            # The dashboard page calls these services from the browser, on the ports they got.
            for other in ("feedback", "commitments", "customers"):
                url = self.services[other].url if other in self.services else self.planned_urls.get(other)
                if url is not None:
                    environment.setdefault(f"CF_DASHBOARD_{other.upper()}_URL", url)
        return environment

    def start_services(self) -> None:
        ports = {
            service: self.options.base_port + index if self.options.base_port else free_port()
            for index, service in enumerate(self.options.services)
        }
        self.planned_urls = {service: f"http://{self.options.host}:{port}" for service, port in ports.items()}
        for service, port in ports.items():
            environment = self.service_environment(service)
            if service == "feedback":
                # Verdict links point at the port feedback got, as customers of this stack reach it.
                environment.setdefault("CF_FEEDBACK_PUBLIC_URL", f"http://{self.options.host}:{port}")
            process = ServiceProcess(service, port, self.options.host, environment, launch=self.launch)
            self.services[service] = process
            process.start(self.printer)

    def wait_ready(self, services: Sequence[str] | None = None) -> None:
        """Poll /readyz of `services` (default all) until each answers 200."""
        waiting = {name: self.services[name] for name in (services or self.services)}
        deadline = time.monotonic() + self.options.ready_timeout_seconds
        with httpx.Client(timeout=2.0) as client:
            while waiting:
                for name, service in list(waiting.items()):
                    if not service.running():
                        code = service.process.returncode if service.process is not None else None
                        raise StackError(f"{name} exited with code {code} before it was ready")
                    with contextlib.suppress(httpx.HTTPError):
                        if client.get(f"{service.url}/readyz").status_code == 200:
                            del waiting[name]
                if waiting and time.monotonic() > deadline:
                    raise StackError(f"not ready after {self.options.ready_timeout_seconds:.0f}s: {', '.join(waiting)}")
                if waiting:
                    time.sleep(0.1)

    def url(self, service: str) -> str:
        return self.services[service].url

    def kill_service(self, service: str) -> None:
        """SIGKILL one service (and its process group), as a crash would."""
        self.services[service].kill()

    def stop_service(self, service: str) -> None:
        self.services[service].stop(self.options.stop_timeout_seconds)

    def restart_service(self, service: str, *, wait: bool = True) -> None:
        """Start `service` again on its port (stopping it first if it still runs)."""
        process = self.services[service]
        if process.running():
            process.stop(self.options.stop_timeout_seconds)
        process.start(self.printer)
        self.remember_processes()
        if wait:
            self.wait_ready([service])

    # -- what the developer needs --------------------------------------------------------------

    def admin_token(self) -> str:
        """A new token with every scope, signed with the stack's secret (`start` prints and keeps one)."""
        return mint_token(self.secret, sub="admin", scopes=SCOPES, ttl_seconds=self.options.token_ttl_seconds)

    def dashboard_token(self, department: str) -> str:
        """A new read-only token bound to `department`, for its dashboard link (nothing in a URL may write)."""
        return mint_token(
            self.secret,
            sub=f"dashboard-{department}",
            scopes=READ_SCOPES,
            department=department,
            ttl_seconds=self.options.token_ttl_seconds,
        )

    def pids(self) -> list[int]:
        """Every process the stack started that still runs (for checks that nothing is left behind)."""
        pids = self._child_pids()
        if self.postgres is not None and self.postgres.pid is not None:
            pids.append(self.postgres.pid)
        found: list[int] = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                found += [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        return found

    def banner(self) -> str:
        ttl_days = self.options.token_ttl_seconds / 86_400
        lines = ["", f"Customer Focus Platform is ready (in {self.ready_after_seconds:.1f}s).", ""]
        for name, service in self.services.items():
            lines.append(f"  {name:<14} {service.url}   docs: {service.url}/docs")
        lines.append(f"  {'kafka':<14} {self.bootstrap_servers}" + ("  (embedded Tansu)" if self.broker else ""))
        if self.postgres is not None:
            lines.append(f"  {'postgres':<14} {self.postgres.url('<service>')}  (embedded)")
        lines += [
            "",
            f"Admin token (every scope, valid {ttl_days:g} days; also in {self.data_dir / ADMIN_TOKEN_FILE}):",
            "",
            f"  {self.token}",
            "",
        ]
        if "notifications" in self.services:
            departments = platform_settings(self.environ).departments
            shown = "support" if "support" in departments else departments[0]
            lines += [
                f"Department dashboards ({', '.join(departments)}); the token in the fragment never leaves the "
                f"browser, reads only and only {shown}'s (`customer-focus token create --department <d>` for another):",
                "",
                f"  {self.url('notifications')}/dashboard/{shown}#token={self.dashboard_token(shown)}",
                "",
            ]
        ports = "" if self.options.base_port in (0, DEFAULT_BASE_PORT) else f" --base-port {self.options.base_port}"
        lines += [
            f"`customer-focus demo{ports}` plays a customer's story against this stack (--help for other URLs).",
            "Ctrl-C stops everything.",
            "",
        ]
        return "\n".join(lines) + "\n"

    def _child_pids(self) -> list[int]:
        """The running services and embedded broker (PostgreSQL is pg_ctl's child, not ours)."""
        pids = [s.pid for s in self.services.values() if s.running() and s.pid is not None]
        if self.broker is not None and self.broker.process is not None and self.broker.process.poll() is None:
            pids.append(self.broker.process.pid)
        return pids

    def _require(self, component: T | None, name: str) -> T:
        if component is None:
            raise StackError(f"the {name} is external; the stack does not control it")
        return component


def _same_process(noted: dict[str, Any]) -> psutil.Process | None:
    """The process noted as `{pid, create_time}` if it still runs (not a later one reusing the pid)."""
    try:
        process = psutil.Process(noted["pid"])
        return process if abs(process.create_time() - noted["create_time"]) < 0.01 else None
    except psutil.NoSuchProcess:
        return None
