"""One expectations app per test module, on the suite's real PostgreSQL and broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from services.expectations.app import create_app
from services.expectations.config import Settings
from tests.support.platform import Platform, serve


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    settings = platform.settings("expectations")
    assert isinstance(settings, Settings)
    async with serve(create_app(settings)) as client:
        yield client


@pytest.fixture(scope="session")
def headers(platform: Platform) -> dict[str, str]:
    """A token that may read and write expectations."""
    return platform.auth("expectations:read", "expectations:write")
