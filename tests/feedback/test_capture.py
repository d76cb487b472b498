"""Capturing feedback (POST /v1/feedback): every field and rule of contract §3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.feedback.conftest import capture, complaint, new_customer, stored_count
from tests.support.platform import Platform


async def test_complaint_is_stored_with_triage_and_status_new(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    occurred = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    created = await capture(client, platform, complaint(customer, occurred_at=occurred.isoformat()))

    assert created["customer_id"] == customer
    assert created["customer_kind"] == "external"
    assert created["channel"] == "email"
    assert created["kind"] == "complaint"
    assert created["product"] == "kettle-2000"
    assert created["tags"] == ["order-123"]
    assert created["rating"] is None
    assert created["status"] == "new"
    assert created["history"] == []
    assert datetime.fromisoformat(created["occurred_at"]) == occurred
    assert created["sentiment"]["label"] == "negative"
    assert -1 <= created["sentiment"]["score"] < -0.05
    assert "delivery" in created["themes"]
    assert created["created_at"] == created["updated_at"]
    fetched = await client.get(f"/v1/feedback/{created['id']}", headers=platform.auth("feedback:read"))
    assert fetched.status_code == 200
    assert fetched.json() == created
