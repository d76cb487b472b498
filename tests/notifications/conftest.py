"""The running notifications service (workers included), a producer and a webhook receiver."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest_asyncio
from fastapi import FastAPI

from services.notifications.app import create_app
from services.notifications.config import Settings
from tests.notifications.helpers import EventPublisher, Receiver
from tests.support.local_server import LocalServer
from tests.support.platform import Platform, serve

# Short retries and timeouts so retry, exhaustion and slowness show within seconds.
TEST_SETTINGS: dict[str, Any] = {
    "webhook_retry_schedule": "0.2,0.4",
    "webhook_allow_private": True,
    "webhook_timeout_seconds": 2.0,
    "webhook_concurrency_per_subscription": 4,
    "sse_ping_seconds": 0.5,
    "database_pool_size": 10,
}


def notifications_settings(platform: Platform, **overrides: Any) -> Settings:
    settings = platform.settings("notifications", **{**TEST_SETTINGS, **overrides})
    assert isinstance(settings, Settings)
    return settings


@dataclass
class RunningService:
    app: FastAPI
    client: httpx.AsyncClient
    server: LocalServer
    settings: Settings


# One service for the whole package: with the embedded broker a consumer that was its group's first
# member (generation 0) never sends LeaveGroup, so each handover would wait out the session timeout.
@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def notifications(platform: Platform) -> AsyncIterator[RunningService]:
    settings = notifications_settings(platform)
    app = create_app(settings)
    async with serve(app) as client:
        # The ASGI transport buffers whole responses, so the live stream is also served for real.
        server = LocalServer(app)
        await server.start()
        try:
            yield RunningService(app, client, server, settings)
        finally:
            await server.stop()


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def publisher(platform: Platform) -> AsyncIterator[EventPublisher]:
    async with EventPublisher.started(platform) as publisher:
        yield publisher


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def receiver() -> AsyncIterator[Receiver]:
    server = Receiver()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
