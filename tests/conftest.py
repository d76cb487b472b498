"""Suite-wide fixtures: the real PostgreSQL and broker, settings, tokens, apps."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.platform import Platform, private_directory, start_platform, stop_platform


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    with private_directory("cf-test-") as base:
        started = start_platform(base)
        try:
            yield started
        finally:
            stop_platform(started)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In CI a skipped test hides a behaviour: fail the run instead."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if os.environ.get("CI") and reporter is not None and reporter.stats.get("skipped"):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
