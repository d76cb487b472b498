"""The feedback app, started once per test module, and small factories."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest_asyncio

from services.feedback.app import create_app
from services.feedback.config import Settings
from tests.support.platform import Platform, serve


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(feedback_settings(platform))) as running:
        yield running


def feedback_settings(platform: Platform, **overrides: Any) -> Settings:
    """The feedback service's settings on the suite's database and broker."""
    settings = platform.settings("feedback", **overrides)
    assert isinstance(settings, Settings)
    return settings


def new_customer() -> str:
    """A customer id no other test uses."""
    return f"customer-{uuid.uuid4().hex[:12]}"


def complaint(customer_id: str, **fields: Any) -> dict[str, Any]:
    """A realistic complaint body; `fields` override or add."""
    body: dict[str, Any] = {
        "customer_id": customer_id,
        "channel": "email",
        "kind": "complaint",
        "text": "My parcel arrived two weeks late and the box was crushed. Really disappointed.",
        "product": "kettle-2000",
        "tags": ["order-123"],
    }
    body.update(fields)
    return body


async def capture(
    client: httpx.AsyncClient, platform: Platform, body: dict[str, Any], **headers: str
) -> dict[str, Any]:
    """POST feedback that must be accepted; return the created representation."""
    response = await client.post("/v1/feedback", json=body, headers={**platform.auth("feedback:write"), **headers})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def stored_count(platform: Platform, customer_id: str) -> int:
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM feedback WHERE customer_id = $1", customer_id)
    return int(rows[0]["n"])
