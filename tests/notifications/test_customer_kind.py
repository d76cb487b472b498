"""The inbox filters by the event data's `customer_kind`: internal customers apart from external ones."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shared import catalogue
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.platform import Platform
from tests.support.schema import schema_differences


async def inbox_ids(service: RunningService, platform: Platform, **params: Any) -> list[dict[str, Any]]:
    response = await service.client.get(
        "/v1/departments/support/notifications",
        params={"limit": 200, **params},
        headers=platform.auth("notifications:read"),
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def test_the_inbox_filters_by_customer_kind(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    records = {
        kind: await publisher.publish(
            catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question", customer_kind=kind), customer_id=customer_id
        )
        for kind in ("internal", "external", None)
    }
    await asyncio.gather(*(publisher.processed(r) for r in records.values()))
    event_ids = {kind: str(record.event_id) for kind, record in records.items()}

    for kind in ("internal", "external"):
        found = await inbox_ids(notifications, platform, customer_kind=kind)
        assert {n["customer_kind"] for n in found} == {kind}
        assert {n["event_id"] for n in found} & set(event_ids.values()) == {event_ids[kind]}
    everything = await inbox_ids(notifications, platform)
    ours = {n["event_id"]: n["customer_kind"] for n in everything if n["event_id"] in event_ids.values()}
    # An event whose data names no customer kind is in the inbox, under neither filter.
    assert ours == {event_ids[kind]: kind for kind in ("internal", "external", None)}
    # With the other filters.
    unread_internal = await inbox_ids(
        notifications, platform, customer_kind="internal", unread="true", event_id=event_ids["internal"]
    )
    assert [n["event_id"] for n in unread_internal] == [event_ids["internal"]]


async def test_an_unknown_customer_kind_is_a_problem_naming_the_field(
    notifications: RunningService, platform: Platform
) -> None:
    response = await notifications.client.get(
        "/v1/departments/support/notifications", params={"customer_kind": "partner"}, headers=platform.auth()
    )
    assert response.status_code == 422, response.text
    assert ["query", "customer_kind"] in [e["loc"] for e in response.json()["errors"]]


@pytest.mark.usefixtures("notifications")
async def test_the_customer_kind_filter_is_served_by_its_index(platform: Platform) -> None:
    plan = await platform.plan(
        "notifications",
        "SELECT * FROM notification WHERE department = 'support' AND customer_kind = 'internal'"
        " ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    assert "ix_notification_department_customer_kind_created_at_id" in plan, plan
    assert "Seq Scan" not in plan, plan


@pytest.mark.usefixtures("notifications")
async def test_the_migrated_notification_table_is_the_model(platform: Platform) -> None:
    assert await schema_differences(platform.database_urls["notifications"], {"notification"}) == []
