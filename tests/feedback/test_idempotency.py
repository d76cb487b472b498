"""Idempotent capture: the same Idempotency-Key replays, a different body is refused."""

from __future__ import annotations

import uuid

import httpx

from tests.feedback.conftest import complaint, new_customer, stored_count
from tests.support.platform import Platform


async def test_same_key_and_body_replays_the_first_response_and_stores_once(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    headers = {**platform.auth("feedback:write"), "Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/feedback", json=complaint(customer), headers=headers)
    replay = await client.post("/v1/feedback", json=complaint(customer), headers=headers)

    assert first.status_code == replay.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    assert await stored_count(platform, customer) == 1


async def test_same_key_with_a_different_body_is_a_422_and_stores_nothing_more(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    headers = {**platform.auth("feedback:write"), "Idempotency-Key": str(uuid.uuid4())}
    assert (await client.post("/v1/feedback", json=complaint(customer), headers=headers)).status_code == 201

    changed = await client.post("/v1/feedback", json=complaint(customer, text="Something else"), headers=headers)

    assert changed.status_code == 422
    assert changed.json()["type"].endswith("idempotency-key-reused")
    assert await stored_count(platform, customer) == 1


async def test_the_same_key_from_another_caller_creates_its_own_feedback(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    key = {"Idempotency-Key": str(uuid.uuid4())}
    one = await client.post(
        "/v1/feedback", json=complaint(customer), headers={**platform.auth("feedback:write", sub="app-a"), **key}
    )
    other = await client.post(
        "/v1/feedback", json=complaint(customer), headers={**platform.auth("feedback:write", sub="app-b"), **key}
    )
    assert one.status_code == other.status_code == 201
    assert one.json()["id"] != other.json()["id"]
    assert await stored_count(platform, customer) == 2


async def test_a_rejected_request_does_not_use_up_its_key(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    headers = {**platform.auth("feedback:write"), "Idempotency-Key": str(uuid.uuid4())}
    rejected = await client.post("/v1/feedback", json=complaint(customer, text=None), headers=headers)
    assert rejected.status_code == 422

    accepted = await client.post("/v1/feedback", json=complaint(customer), headers=headers)
    assert accepted.status_code == 201
    assert "idempotent-replayed" not in accepted.headers


async def test_a_key_longer_than_255_characters_is_a_422_naming_the_header(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    headers = {**platform.auth("feedback:write"), "Idempotency-Key": "k" * 256}
    response = await client.post("/v1/feedback", json=complaint(customer), headers=headers)

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["header", "Idempotency-Key"]
    assert await stored_count(platform, customer) == 0
