"""The running customers service (its consumer included) and a producer publishing the other services' events."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from services.customers.app import create_app
from services.customers.config import Settings
from tests.notifications.helpers import EventPublisher
from tests.support.platform import Platform, serve


# One service for the whole package: with the embedded broker a consumer that was its group's first
# member never sends LeaveGroup, so a second app's consumer would wait out the session timeout.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    settings = platform.settings("customers")
    assert isinstance(settings, Settings)
    async with serve(create_app(settings)) as client:
        yield client


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def publisher(platform: Platform) -> AsyncIterator[EventPublisher]:
    async with EventPublisher.started(platform) as publisher:
        yield publisher


@pytest.fixture(scope="session")
def reader(platform: Platform) -> dict[str, str]:
    return platform.auth("customers:read")


@pytest.fixture(scope="session")
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("customers:read", "customers:write")
