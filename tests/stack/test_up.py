"""`customer-focus up` (what `make run` calls) as real processes on real ports."""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import signal
import stat
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest
from sqlalchemy.engine import make_url

from ops.platform import REPO_ROOT, SERVICES
from ops.stack import port_is_free
from shared.auth import SCOPES, TokenVerifier
from shared.db import asyncpg_dsn
from tests.stack.up_process import UpProcess, alive, free_port_range, processes_mentioning, service_ports
from tests.support.platform import Platform

# One list route of each service, from the contract, and the scope it needs.
SECURED_ROUTE = {
    "feedback": "/v1/feedback",
    "expectations": "/v1/questions",
    "commitments": "/v1/commitments",
    "notifications": "/v1/departments/sales/notifications",
    "customers": "/v1/customers",
}


class FirstRun:
    def __init__(self, data_dir: Path, base_port: int) -> None:
        self.data_dir = data_dir
        self.base_port = base_port
        self.up = UpProcess(data_dir, "--base-port", str(base_port), "--broker-port", "0")
        self.ready_after = self.up.wait_ready()
        self.token = self.up.token()
        self.pg_version = (data_dir / "pg" / "PG_VERSION").stat()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstRun]:
    """`up` on an empty data dir."""
    run = FirstRun(tmp_path_factory.mktemp("stack") / "data", free_port_range(len(SERVICES)))
    try:
        yield run
    finally:
        run.up.stop()


@pytest.fixture(scope="module")
def second_run(first_run: FirstRun) -> Iterator[UpProcess]:
    """`up` again on the first run's data dir, once the first has stopped."""
    first_run.up.stop()
    up = UpProcess(first_run.data_dir, "--base-port", "0", "--broker-port", "0")
    try:
        yield up
    finally:
        up.stop()


@dataclass
class ThirdRun:
    up: UpProcess
    killed_children: set[int]
    survivors: set[int]
    leftover: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def third_run(first_run: FirstRun, second_run: UpProcess) -> Iterator[ThirdRun]:
    """The second run's `up` SIGKILLed; a process noted in its data dir still running; then `up` again."""
    second_run.wait_ready()
    children = {child.pid for child in psutil.Process(second_run.process.pid).children()}
    os.kill(second_run.process.pid, signal.SIGKILL)
    second_run.process.wait(10)
    survivors = until_none_alive(children, within=5.0)
    # What the kernel would leave on a system without a parent-death signal: noted, still running.
    leftover = subprocess.Popen(["sleep", "300"], start_new_session=True)
    notes_file = first_run.data_dir / "processes.json"
    notes = json.loads(notes_file.read_text())
    notes["processes"].append({"pid": leftover.pid, "create_time": psutil.Process(leftover.pid).create_time()})
    notes_file.write_text(json.dumps(notes))
    up = UpProcess(first_run.data_dir, "--base-port", "0", "--broker-port", "0", "--service", "feedback")
    try:
        yield ThirdRun(up, children, survivors, leftover)
    finally:
        up.stop()
        leftover.kill()
        leftover.wait()
        for pid in alive(children):
            os.killpg(pid, signal.SIGKILL)


def until_none_alive(pids: set[int], within: float) -> set[int]:
    """Those of `pids` still alive after up to `within` seconds."""
    deadline = time.monotonic() + within
    while alive(pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive(pids)


def test_up_brings_every_service_to_ready_on_consecutive_ports(first_run: FirstRun) -> None:
    urls = first_run.up.urls()
    assert list(urls) == list(SERVICES)
    for service, port in service_ports(first_run.base_port).items():
        assert urls[service] == f"http://127.0.0.1:{port}"
        ready = httpx.get(f"{urls[service]}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"status": "ready", "database": "ok", "broker": "ok"}


def test_up_prints_an_admin_token_with_every_scope_and_writes_it_to_the_data_dir(first_run: FirstRun) -> None:
    secret = (first_run.data_dir / "auth-secret").read_text().strip()
    principal = TokenVerifier(secret).verify(first_run.token)
    assert principal.scopes == frozenset(SCOPES)
    assert principal.department is None
    assert (first_run.data_dir / "admin-token").read_text().strip() == first_run.token


@pytest.mark.parametrize("service", SERVICES)
def test_every_service_accepts_the_printed_admin_token(first_run: FirstRun, service: str) -> None:
    url = first_run.up.urls()[service] + SECURED_ROUTE[service]
    assert httpx.get(url, timeout=5).status_code == 401
    answer = httpx.get(url, headers={"Authorization": f"Bearer {first_run.token}"}, timeout=5)
    assert answer.status_code == 200, answer.text


DASHBOARD_LINK = re.compile(r"^\s+(http://127\.0\.0\.1:\d+)/dashboard/([\w-]+)#token=(\S+)\s*$", re.MULTILINE)


def test_the_dashboard_link_carries_a_read_only_token_bound_to_its_department(first_run: FirstRun) -> None:
    link = DASHBOARD_LINK.search(first_run.up.output)
    assert link is not None, first_run.up.output
    base, department, token = link.groups()
    secret = (first_run.data_dir / "auth-secret").read_text().strip()
    principal = TokenVerifier(secret).verify(token)
    assert token != first_run.token
    assert principal.department == department == "support"
    assert principal.scopes == {scope for scope in SCOPES if scope.endswith(":read")}
    bearer = {"Authorization": f"Bearer {token}"}

    own = httpx.get(f"{base}/v1/departments/support/notifications", headers=bearer, timeout=5)
    other = httpx.get(f"{base}/v1/departments/sales/notifications", headers=bearer, timeout=5)
    write = httpx.post(
        f"{first_run.up.urls()['feedback']}/v1/feedback",
        json={"customer_id": "c-dashboard", "channel": "web", "kind": "compliment", "text": "Nice."},
        headers=bearer,
        timeout=5,
    )

    assert (own.status_code, other.status_code, write.status_code) == (200, 403, 403)


def test_notifications_accepts_a_webhook_on_loopback_under_make_run(first_run: FirstRun) -> None:
    url = first_run.up.urls()["notifications"] + "/v1/subscriptions"
    body = {"department": "sales", "url": "http://127.0.0.1:9/customer-focus-hook", "event_types": []}

    answer = httpx.post(url, json=body, headers={"Authorization": f"Bearer {first_run.token}"}, timeout=5)

    assert answer.status_code == 201, answer.text


def test_the_generated_secret_is_readable_by_its_owner_only(first_run: FirstRun) -> None:
    mode = stat.S_IMODE((first_run.data_dir / "auth-secret").stat().st_mode)
    assert mode == 0o600


def test_the_data_dir_of_make_run_is_never_committed() -> None:
    for name in ("auth-secret", "admin-token"):
        ignored = subprocess.run(["git", "check-ignore", "-q", f".data/{name}"], cwd=REPO_ROOT, check=False)
        assert ignored.returncode == 0, name


def test_up_streams_every_process_log_with_its_name_in_front(first_run: FirstRun) -> None:
    lines = first_run.up.output.splitlines()
    for name in (*SERVICES, "broker", "stack"):
        assert any(line.startswith(f"{name:<13} | ") for line in lines), name
    assert any(line.startswith("feedback      | ") and "Application startup complete" in line for line in lines)


def test_a_second_up_on_a_data_dir_in_use_refuses_and_leaves_the_first_alone(first_run: FirstRun) -> None:
    running = first_run.up.process_tree()

    second = UpProcess(first_run.data_dir, "--base-port", "0", "--broker-port", "0")

    assert second.process.wait(60) == 1
    assert "another stack" in second.output
    assert alive(running) == running
    assert httpx.get(f"{first_run.up.urls()['feedback']}/readyz", timeout=5).status_code == 200


def test_ctrl_c_stops_every_process_it_started(first_run: FirstRun) -> None:
    started = first_run.up.process_tree()
    # up, postgres (postmaster and its workers), the broker and four services
    assert len(started) >= 1 + 2 + 1 + len(SERVICES)

    assert first_run.up.stop(signal.SIGINT) == 0

    # On a loaded machine the last processes (PostgreSQL's, in CI once) may still be ending as `up` returns:
    # wait for them a while. A process `up` failed to stop stays alive and fails here, with `up`'s output.
    assert until_none_alive(started, within=30.0) == set(), first_run.up.output
    assert processes_mentioning(str(first_run.data_dir)) == []
    assert all(port_is_free("127.0.0.1", port) for port in service_ports(first_run.base_port).values())
    assert not (first_run.data_dir / "pg" / "postmaster.pid").exists()


def test_a_second_up_reuses_the_data_dir_and_is_ready_within_20_seconds(
    first_run: FirstRun, second_run: UpProcess
) -> None:
    ready_after = second_run.wait_ready()

    assert ready_after < 20, f"{ready_after:.1f}s"
    reused = (first_run.data_dir / "pg" / "PG_VERSION").stat()
    assert (reused.st_ino, reused.st_mtime_ns) == (first_run.pg_version.st_ino, first_run.pg_version.st_mtime_ns)
    secret = (first_run.data_dir / "auth-secret").read_text().strip()
    assert TokenVerifier(secret).verify(first_run.token).sub == "admin"


def test_a_hard_killed_up_takes_its_broker_and_services_with_it(third_run: ThirdRun) -> None:
    assert len(third_run.killed_children) == 1 + len(SERVICES)
    assert third_run.survivors == set()


def test_up_stops_what_an_earlier_stack_noted_and_left_running(third_run: ThirdRun) -> None:
    third_run.up.wait_ready()

    assert third_run.leftover.poll() == -signal.SIGTERM
    assert f"stopping pid {third_run.leftover.pid} (sleep), left running by an earlier stack" in third_run.up.output
    assert httpx.get(f"{third_run.up.urls()['feedback']}/readyz", timeout=5).status_code == 200


def test_sigterm_stops_every_process_it_started(third_run: ThirdRun) -> None:
    third_run.up.wait_ready()
    started = third_run.up.process_tree()

    assert third_run.up.stop(signal.SIGTERM) == 0

    assert until_none_alive(started, within=30.0) == set(), third_run.up.output
    assert processes_mentioning(str(third_run.up.data_dir)) == []


def test_up_with_an_unreachable_kafka_says_so_and_leaves_nothing_behind(tmp_path: Path) -> None:
    environ = {**os.environ, "CF_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port_range(1)}"}

    up = UpProcess(tmp_path / "data", "--base-port", "0", "--service", "feedback", environ=environ)

    assert up.process.wait(90) == 1
    assert "cannot reach Kafka" in up.output
    assert processes_mentioning(str(tmp_path / "data")) == []


GIVEN_SECRET = secrets.token_urlsafe(32)
EXTERNAL_SERVICES = ("commitments",)  # one keeps it quick


@dataclass
class ExternalRun:
    up: UpProcess
    data_dir: Path
    commands: list[str]


@pytest.fixture(scope="module")
def external_run(platform: Platform, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalRun]:
    """`up` with CF_<SERVICE>_DATABASE_URL (databases not created yet, URLs written `postgresql://` as
    hosts hand them out), CF_KAFKA_BOOTSTRAP_SERVERS and CF_AUTH_SECRET pointing at the suite's
    PostgreSQL server and broker."""
    run_id = uuid.uuid4().hex[:8]
    urls = {
        service: make_url(platform.database_urls[service])
        .set(drivername="postgresql", database=f"up_{service}_{run_id}")
        .render_as_string(hide_password=False)
        for service in EXTERNAL_SERVICES
    }
    environ = {
        **os.environ,
        "CF_KAFKA_BOOTSTRAP_SERVERS": platform.bootstrap_servers,
        "CF_TOPIC_PREFIX": f"up{run_id}.",
        "CF_AUTH_SECRET": GIVEN_SECRET,
        **{f"CF_{service.upper()}_DATABASE_URL": url for service, url in urls.items()},
    }
    chosen = [arg for service in EXTERNAL_SERVICES for arg in ("--service", service)]
    data_dir = tmp_path_factory.mktemp("external") / "data"
    up = UpProcess(data_dir, "--base-port", "0", "--broker-port", "0", *chosen, environ=environ)
    try:
        up.wait_ready()
        commands = [" ".join(psutil.Process(pid).cmdline()) for pid in up.process_tree()]
        yield ExternalRun(up, data_dir, commands)
    finally:
        up.stop()
        asyncio.run(_drop(urls))


async def _drop(urls: dict[str, str]) -> None:
    for url in urls.values():
        server = make_url(url)
        conn = await asyncpg.connect(asyncpg_dsn(server.set(database="postgres").render_as_string(False)))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{server.database}" WITH (FORCE)')
        finally:
            await conn.close()


def test_up_with_external_postgres_and_kafka_starts_nothing_embedded(
    platform: Platform, external_run: ExternalRun
) -> None:
    urls = external_run.up.urls()

    assert list(urls) == list(EXTERNAL_SERVICES)
    for url in urls.values():
        assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    assert external_run.up.bootstrap_servers() == platform.bootstrap_servers
    assert not (external_run.data_dir / "pg").exists()
    # `up` and its service: no PostgreSQL, no broker
    assert len(external_run.commands) == 1 + len(EXTERNAL_SERVICES)
    assert sum("uvicorn" in command for command in external_run.commands) == len(EXTERNAL_SERVICES)


def test_a_given_cf_auth_secret_signs_the_admin_token_and_none_is_generated(external_run: ExternalRun) -> None:
    principal = TokenVerifier(GIVEN_SECRET).verify(external_run.up.token())

    assert principal.scopes == frozenset(SCOPES)
    assert not (external_run.data_dir / "auth-secret").exists()
