"""Department inboxes: newest first, paging, unread and read, department isolation."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from shared import catalogue
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.platform import Platform


async def inbox(
    service: RunningService, platform: Platform, department: str, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await service.client.get(
        f"/v1/departments/{department}/notifications", params=params, headers=platform.auth("notifications:read")
    )
    assert response.status_code == 200, response.text
    body = response.json()
    return body["items"], body["next_cursor"]


async def questions(publisher: EventPublisher, customer_id: str, count: int) -> list[str]:
    """Publish `count` questions (routed to support) and wait until all are handled; their event ids, oldest first."""
    records = [
        await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question"), customer_id=customer_id)
        for _ in range(count)
    ]
    await asyncio.gather(*(publisher.processed(r) for r in records))
    return [str(r.event_id) for r in records]


async def notification_of(
    service: RunningService, platform: Platform, department: str, event_id: str
) -> dict[str, Any]:
    [notification], _ = await inbox(service, platform, department, event_id=event_id)
    return notification


async def test_inbox_lists_newest_first_and_pages_without_repeats_while_new_ones_arrive(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    ours = await questions(publisher, customer(), 5)

    seen, cursor = await inbox(notifications, platform, "support", limit=2)
    arrived_later = await questions(publisher, customer(), 2)
    while cursor is not None and not set(ours) <= {n["event_id"] for n in seen}:
        page, cursor = await inbox(notifications, platform, "support", limit=2, cursor=cursor)
        seen += page

    ids = [n["id"] for n in seen]
    assert len(ids) == len(set(ids))
    assert [n["event_id"] for n in seen if n["event_id"] in ours] == list(reversed(ours))
    assert not {n["event_id"] for n in seen} & set(arrived_later)
    order = [(n["created_at"], n["id"]) for n in seen]
    assert order == sorted(order, reverse=True)


async def test_notification_carries_the_cloudevent_with_its_department(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    [event_id] = await questions(publisher, customer_id, 1)
    listed = await notification_of(notifications, platform, "support", event_id)
    one = await notifications.client.get(
        f"/v1/departments/support/notifications/{listed['id']}", headers=platform.auth("notifications:read")
    )
    assert one.json() == listed
    assert listed["event_id"] == event_id
    assert listed["event_type"] == "feedback.received"
    assert listed["customer_id"] == customer_id
    assert listed["read_at"] is None
    assert listed["event"]["id"] == event_id
    assert listed["event"]["department"] == "support"
    assert listed["event"]["data"]["kind"] == "question"


async def test_marking_read_moves_a_notification_out_of_unread(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    to_read, to_leave = await questions(publisher, customer(), 2)
    notification = await notification_of(notifications, platform, "support", to_read)

    read = await notifications.client.post(
        f"/v1/departments/support/notifications/{notification['id']}/read", headers=platform.auth("notifications:read")
    )
    again = await notifications.client.post(
        f"/v1/departments/support/notifications/{notification['id']}/read", headers=platform.auth("notifications:read")
    )
    assert read.status_code == 200
    assert read.json()["read_at"] is not None
    assert again.json()["read_at"] == read.json()["read_at"]
    for event_id, unread, expected in (
        (to_read, "true", []),
        (to_read, "false", [to_read]),
        (to_leave, "true", [to_leave]),
        (to_leave, "false", []),
    ):
        found, _ = await inbox(notifications, platform, "support", event_id=event_id, unread=unread)
        assert [n["event_id"] for n in found] == expected


async def test_department_token_reads_only_its_own_inbox(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    [event_id] = await questions(publisher, customer(), 1)
    notification = await notification_of(notifications, platform, "support", event_id)
    support = platform.auth("notifications:read", department="support")
    sales = platform.auth("notifications:read", department="sales")

    own = await notifications.client.get(
        "/v1/departments/support/notifications", params={"event_id": event_id}, headers=support
    )
    assert [n["id"] for n in own.json()["items"]] == [notification["id"]]
    for response in (
        await notifications.client.get("/v1/departments/support/notifications", headers=sales),
        await notifications.client.get(f"/v1/departments/support/notifications/{notification['id']}", headers=sales),
        await notifications.client.post(
            f"/v1/departments/support/notifications/{notification['id']}/read", headers=sales
        ),
    ):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"


async def test_another_departments_notification_is_not_in_this_inbox(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    [event_id] = await questions(publisher, customer(), 1)
    notification = await notification_of(notifications, platform, "support", event_id)
    in_sales, _ = await inbox(notifications, platform, "sales", event_id=event_id)
    assert in_sales == []
    for response in (
        await notifications.client.get(
            f"/v1/departments/sales/notifications/{notification['id']}", headers=platform.auth()
        ),
        await notifications.client.post(
            f"/v1/departments/sales/notifications/{notification['id']}/read", headers=platform.auth()
        ),
        await notifications.client.post(
            f"/v1/departments/support/notifications/{uuid.uuid4()}/read", headers=platform.auth()
        ),
    ):
        assert response.status_code == 404, response.text


async def test_unknown_department_is_a_problem_naming_it(notifications: RunningService, platform: Platform) -> None:
    response = await notifications.client.get("/v1/departments/legal/notifications", headers=platform.auth())
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "department"]


async def test_bad_inbox_query_is_a_problem_naming_the_field(notifications: RunningService, platform: Platform) -> None:
    for params, loc in (
        ({"cursor": "garbage"}, ["query", "cursor"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"unread": "perhaps"}, ["query", "unread"]),
        ({"event_id": "not-a-uuid"}, ["query", "event_id"]),
    ):
        response = await notifications.client.get(
            "/v1/departments/support/notifications", params=params, headers=platform.auth()
        )
        assert response.status_code == 422, params
        assert loc in [e["loc"] for e in response.json()["errors"]]


async def test_inbox_needs_the_notifications_read_scope(notifications: RunningService, platform: Platform) -> None:
    response = await notifications.client.get(
        "/v1/departments/support/notifications", headers=platform.auth("feedback:read")
    )
    assert response.status_code == 403
