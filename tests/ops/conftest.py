"""One running stack for every operator command test (`demo`, `replay`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ops.stack import Stack
from tests.ops.support import running_stack


@pytest.fixture(scope="package")
def stack() -> Iterator[Stack]:
    with running_stack() as started:
        yield started
