"""A change whose event would pass `CF_MAX_EVENT_BYTES` is a 422 that changes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest_asyncio

from services.feedback.app import create_app
from tests.feedback.conftest import complaint, feedback_settings, new_customer, stored_count
from tests.support.platform import Platform, serve

MAX_EVENT_BYTES = 4096


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client_with_small_events(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The feedback service with events limited to 4 KiB."""
    async with serve(create_app(feedback_settings(platform, max_event_bytes=MAX_EVENT_BYTES))) as running:
        yield running


async def test_a_capture_whose_event_would_be_too_large_is_a_422_and_stores_nothing(
    client_with_small_events: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    response = await client_with_small_events.post(
        "/v1/feedback", json=complaint(customer, text="late " * 1000), headers=platform.auth("feedback:write")
    )
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("/event-too-large")
    assert problem["max_event_bytes"] == MAX_EVENT_BYTES
    assert problem["event_bytes"] > MAX_EVENT_BYTES
    assert await stored_count(platform, customer) == 0


async def test_a_lifecycle_move_whose_event_would_be_too_large_is_a_422_and_changes_nothing(
    client_with_small_events: httpx.AsyncClient, platform: Platform
) -> None:
    writer = platform.auth("feedback:write", "feedback:read")
    created = await client_with_small_events.post("/v1/feedback", json=complaint(new_customer()), headers=writer)
    assert created.status_code == 201, created.text
    feedback_id = created.json()["id"]
    # Each move's event carries the whole history: notes of control characters grow it fastest.
    moves = ["acknowledged", "in_progress", "resolved", "reopened", "acknowledged"]
    refused = None
    for status in moves:
        before = (await client_with_small_events.get(f"/v1/feedback/{feedback_id}", headers=writer)).json()
        response = await client_with_small_events.patch(
            f"/v1/feedback/{feedback_id}", json={"status": status, "note": "\u0001" * 300}, headers=writer
        )
        if response.status_code == 422:
            refused = response.json()
            break
        assert response.status_code == 200, response.text
    assert refused is not None, "the history grew past 4 KiB without a refusal"
    assert refused["type"].endswith("/event-too-large")
    after = (await client_with_small_events.get(f"/v1/feedback/{feedback_id}", headers=writer)).json()
    assert after["status"] == before["status"]
    assert after["history"] == before["history"]
