"""Every filter of a department's inbox is one index walk in keyset order, never a scan of the table (issue 18)."""

from __future__ import annotations

import uuid

import pytest

from tests.support.platform import Platform

PAGE = "ORDER BY created_at DESC, id DESC LIMIT 51"
# Each filter of GET /v1/departments/{department}/notifications, as the repository writes it, and its index (the
# event's unique key; on the suite's small table the planner may walk the department's keyset index instead).
FILTERS = {
    "no filter": ("", "ix_notification_department_created_at_id"),
    "unread=true": ("AND read_at IS NULL", "ix_notification_unread"),
    "unread=false": ("AND read_at IS NOT NULL", "ix_notification_read"),
    "customer_kind": ("AND customer_kind = 'internal'", "ix_notification_department_customer_kind_created_at_id"),
    "event_id": (
        f"AND event_id = '{uuid.uuid4()}'",
        "uq_notification_event_id_department|ix_notification_department_created_at_id",
    ),
}


@pytest.mark.usefixtures("notifications")
@pytest.mark.parametrize("name", list(FILTERS))
async def test_each_inbox_filter_walks_its_index(platform: Platform, name: str) -> None:
    condition, index = FILTERS[name]
    plan = await platform.plan(
        "notifications", f"SELECT * FROM notification WHERE department = 'support' {condition} {PAGE}"
    )
    assert any(name in plan for name in index.split("|")), plan
    assert "Seq Scan" not in plan, plan
