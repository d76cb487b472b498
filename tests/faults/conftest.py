"""The fault-injection suite runs the real processes: a `Stack` of its own.

`make test` runs a reduced variant (2,000 complaints); `make test-faults`
sets CF_FAULTS_SCALE=full (10,000). Figures go to test-artifacts/faults/.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ops.stack import Stack, StackOptions
from tests.support.platform import private_directory

FULL = os.environ.get("CF_FAULTS_SCALE", "ci") == "full"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "faults"


def report(name: str, figures: dict[str, Any]) -> None:
    """Keep a fault test's figures as an artifact and print them."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / f"{name}.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"\n{name}: {json.dumps(figures, default=str)}")  # noqa: T201 - the figures are the point


def start_stack(data_dir: Path, **environment: str) -> Stack:
    options = StackOptions(
        data_dir=data_dir,
        base_port=0,
        broker_port=0,
        environment={"CF_LOG_LEVEL": "WARNING", "CF_WEBHOOK_ALLOW_PRIVATE": "true", **environment},
        ready_timeout_seconds=120,
    )
    stack = Stack(options, environ={k: v for k, v in os.environ.items() if not k.startswith("CF_")}, out=io.StringIO())
    try:
        stack.start()
    except BaseException:
        stack.stop()
        raise
    return stack


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with private_directory("cf-faults-") as data_dir:
        started = start_stack(data_dir)
        try:
            yield started
        finally:
            started.stop()
