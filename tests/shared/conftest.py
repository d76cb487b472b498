from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from fastapi import FastAPI

from shared.kafka import ensure_topics
from tests.shared.probe_app import CREATE_TABLE, create_probe_app
from tests.support.platform import Platform, serve


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def probe(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The probe app on the feedback database, workers off (API behaviour only)."""
    conn_rows = await platform.fetch("feedback", CREATE_TABLE)
    assert conn_rows == []
    async with serve(create_probe_app(platform.settings("feedback", run_workers=False))) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def relaying(platform: Platform) -> AsyncIterator[tuple[FastAPI, str]]:
    """A service with its relay running, publishing under a topic prefix of its own."""
    prefix = f"o{uuid.uuid4().hex[:8]}."
    settings = platform.settings("feedback", topic_prefix=prefix)
    await ensure_topics(settings)
    app = create_probe_app(settings)
    async with serve(app):
        yield app, prefix
