from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from services.commitments.app import create_app
from services.commitments.config import Settings
from shared.config import DEFAULT_DEPARTMENTS
from tests.commitments.support import EXTRA_DEPARTMENT, LEAD_SECONDS
from tests.support.platform import Platform, serve


def commitments_settings(platform: Platform, **overrides: Any) -> Settings:
    """Settings with a one-second due-soon lead and one extra department (only the metrics tests use it).

    The feedback consumer is off unless asked for: with the embedded broker each new member of its
    group waits out the session timeout of the one before, so only the module that needs it runs it.
    """
    values: dict[str, Any] = {
        "commitments_due_soon_lead_seconds": LEAD_SECONDS,
        "commitments_response_promises": False,
        "departments": [*DEFAULT_DEPARTMENTS, EXTRA_DEPARTMENT],
        **overrides,
    }
    settings = platform.settings("commitments", **values)
    assert isinstance(settings, Settings)
    return settings


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The commitments service, its scheduler and outbox relay running."""
    async with serve(create_app(commitments_settings(platform))) as served:
        yield served
