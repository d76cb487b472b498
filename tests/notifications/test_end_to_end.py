"""End to end: a complaint posted to the real feedback service reaches support's inbox and topic."""

from __future__ import annotations

from typing import Any

import orjson

from services.feedback.app import create_app as create_feedback_app
from services.feedback.config import Settings as FeedbackSettings
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import customer
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


async def test_complaint_posted_to_the_feedback_service_reaches_support_and_management(
    notifications: RunningService, platform: Platform
) -> None:
    customer_id = customer()
    settings = platform.settings("feedback")
    assert isinstance(settings, FeedbackSettings)
    async with serve(create_feedback_app(settings)) as feedback_service:
        posted = await feedback_service.post(
            "/v1/feedback",
            json={
                "customer_id": customer_id,
                "channel": "phone",
                "kind": "complaint",
                "text": "The replacement part never arrived and nobody called back.",
            },
            headers=platform.auth("feedback:write"),
        )
        assert posted.status_code == 201, posted.text
        feedback = posted.json()

        async def in_inbox(department: str) -> dict[str, Any] | None:
            response = await notifications.client.get(
                f"/v1/departments/{department}/notifications", params={"limit": 200}, headers=platform.auth()
            )
            return next((n for n in response.json()["items"] if n["subject"] == feedback["id"]), None)

        # The consumer group may still be forming when this test starts (up to ~20 s on the embedded broker).
        support = await eventually(lambda: in_inbox("support"), within=90)
        management = await eventually(lambda: in_inbox("management"), within=30)

    assert support["event_type"] == management["event_type"] == "feedback.received"
    assert support["event_id"] == management["event_id"]
    assert support["event"]["data"] == feedback
    on_topic = await read_topic(
        platform.bootstrap_servers,
        platform.topic("notifications.support"),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: len(found) >= 1,
    )
    [event] = [orjson.loads(r.value) for r in on_topic]
    assert (event["id"], event["department"], event["data"]) == (support["event_id"], "support", feedback)
    assert await in_sales_or_production(notifications, platform, support["event_id"]) == []


async def in_sales_or_production(service: RunningService, platform: Platform, event_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for department in ("sales", "production"):
        response = await service.client.get(
            f"/v1/departments/{department}/notifications", params={"event_id": event_id}, headers=platform.auth()
        )
        found += response.json()["items"]
    return found
