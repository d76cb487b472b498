from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from tests.shared.probe_app import CREATE_TABLE, create_probe_app
from tests.support.platform import Platform, serve


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def probe(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The probe app on the feedback database, workers off (API behaviour only)."""
    conn_rows = await platform.fetch("feedback", CREATE_TABLE)
    assert conn_rows == []
    async with serve(create_probe_app(platform.settings("feedback", run_workers=False))) as client:
        yield client
