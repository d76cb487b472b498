"""The `Stack` controls that benchmarks and fault-injection tests use, on real processes."""

from __future__ import annotations

import io
import os
import signal
import time
from collections.abc import Iterator

import httpx
import pytest

from ops.stack import Stack, StackOptions
from tests.stack.up_process import alive


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The feedback service alone, on an embedded PostgreSQL and broker, any free ports."""
    options = StackOptions(
        data_dir=tmp_path_factory.mktemp("stack") / "data", base_port=0, broker_port=0, services=("feedback",)
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("CF_")}
    with Stack(options, environ=environ, out=io.StringIO()) as started:
        yield started


def readyz(stack: Stack) -> int | None:
    try:
        return httpx.get(f"{stack.url('feedback')}/readyz", timeout=5).status_code
    except httpx.TransportError:
        return None


def readyz_becomes(stack: Stack, status: int | None, within: float = 15.0) -> bool:
    deadline = time.monotonic() + within
    while readyz(stack) != status:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_killed_service_dies_at_once_and_restarts_on_its_port(stack: Stack) -> None:
    url = stack.url("feedback")

    stack.kill_service("feedback")

    process = stack.services["feedback"].process
    assert process is not None
    assert process.returncode == -signal.SIGKILL
    assert readyz(stack) is None
    stack.restart_service("feedback")
    assert stack.url("feedback") == url
    assert readyz(stack) == 200


def test_a_paused_broker_makes_services_unready_until_it_resumes(stack: Stack) -> None:
    stack.pause_broker()
    try:
        assert readyz_becomes(stack, 503)
    finally:
        stack.resume_broker()
    assert readyz_becomes(stack, 200)


def test_a_stopped_postgres_makes_services_unready_until_it_starts(stack: Stack) -> None:
    stack.stop_postgres()
    try:
        assert readyz_becomes(stack, 503)
    finally:
        stack.start_postgres()
    assert readyz_becomes(stack, 200)


def test_stop_ends_every_process_the_stack_started(stack: Stack) -> None:
    started = set(stack.pids())
    assert len(started) >= 4  # the service, the broker, the postmaster and its workers

    stack.stop()

    assert alive(started) == set()
