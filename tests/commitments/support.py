"""Factories and waits shared by the commitments tests."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson

from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform

# Short enough that tests wait a couple of seconds, long enough to tell the moments apart.
LEAD_SECONDS = 1.0
EXTRA_DEPARTMENT = "accounts"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def in_seconds(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def commitment_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "customer_id": unique("customer"),
        "title": "Send the revised quote",
        "description": "The customer asked for a quote without the installation fee.",
        "owner_id": unique("owner"),
        "department": "sales",
        "due_at": in_seconds(86_400).isoformat(),
        "source": {"type": "meeting", "id": str(uuid.uuid4())},
    }
    body.update(overrides)
    if isinstance(body["due_at"], datetime):
        body["due_at"] = body["due_at"].isoformat()
    return body


async def create(client: httpx.AsyncClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v1/commitments", json=commitment_body(**overrides), headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def wait_for_status(
    client: httpx.AsyncClient, headers: dict[str, str], commitment_id: str, status: str, *, within: float = 8.0
) -> dict[str, Any]:
    deadline = time.monotonic() + within
    while True:
        current: dict[str, Any] = (await client.get(f"/v1/commitments/{commitment_id}", headers=headers)).json()
        if current["status"] == status:
            return current
        assert time.monotonic() < deadline, f"still {current['status']}, never {status}"
        await asyncio.sleep(0.05)


def envelope(record: Record) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(record.value)
    return value


async def events_about(
    platform: Platform, subjects: set[str], *, until: int, within: float = 15.0
) -> list[dict[str, Any]]:
    """The commitment events about `subjects` on commitments.events, read until `until` of them arrived."""
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("commitments.events"),
        where=lambda r: envelope(r)["subject"] in subjects,
        until=lambda found: len(found) >= until,
        within=within,
    )
    return [envelope(r) for r in records]
