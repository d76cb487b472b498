"""Every complaint is a promise (contract §5, v1.1): response policies, and the feedback consumer that
makes and meets their promises, end to end through the feedback, commitments and notifications services."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI
from sqlalchemy import text

from services.commitments.app import create_app as create_commitments
from services.commitments.responses import FeedbackResponses
from services.feedback.app import create_app as create_feedback
from services.notifications.app import create_app as create_notifications
from shared.consumer import ConsumedEvent
from shared.unit_of_work import unit_of_work
from tests.commitments.conftest import commitments_settings
from tests.commitments.support import at, envelope, events_about, unique
from tests.feedback.conftest import feedback_settings
from tests.notifications.conftest import notifications_settings
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve, sessions_on
from tests.support.waiting import eventually

HOUR = 3600
T = TypeVar("T")


@dataclass
class Services:
    feedback: httpx.AsyncClient
    commitments: httpx.AsyncClient
    notifications: httpx.AsyncClient
    headers: dict[str, str]


async def consuming(app: FastAPI) -> None:
    """Wait until each of `app`'s consumers holds partitions (a new member may wait out an old one's session)."""
    runtime = app.state.runtime

    async def assigned() -> bool:
        return bool(runtime.consumers) and all(c.assigned() for c in runtime.consumers)

    await eventually(assigned, within=60)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(platform: Platform) -> AsyncIterator[Services]:
    commitments_app = create_commitments(commitments_settings(platform, commitments_response_promises=True))
    notifications_app = create_notifications(notifications_settings(platform))
    async with (
        serve(create_feedback(feedback_settings(platform))) as feedback,
        serve(commitments_app) as commitments,
        serve(notifications_app) as notifications,
    ):
        await asyncio.gather(consuming(commitments_app), consuming(notifications_app))
        yield Services(feedback, commitments, notifications, platform.auth())


async def post_feedback(services: Services, **fields: Any) -> dict[str, Any]:
    body = {"customer_id": unique("customer"), "channel": "email", "kind": "complaint", "text": "It broke again."}
    response = await services.feedback.post("/v1/feedback", json={**body, **fields}, headers=services.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def move(services: Services, feedback_id: str, *statuses: str) -> dict[str, Any]:
    moved: dict[str, Any] = {}
    for status in statuses:
        response = await services.feedback.patch(
            f"/v1/feedback/{feedback_id}", json={"status": status}, headers=services.headers
        )
        assert response.status_code == 200, response.text
        moved = response.json()
    return moved


async def promises_for(services: Services, feedback_id: str) -> list[dict[str, Any]]:
    response = await services.commitments.get(
        "/v1/commitments",
        params={"source_type": "feedback", "source_id": feedback_id, "limit": 200},
        headers=services.headers,
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return sorted(items, key=lambda c: (c["created_at"], c["kind"]))


async def wait_for_promises(
    services: Services, feedback_id: str, check: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    async def current() -> list[dict[str, Any]] | None:
        promises = await promises_for(services, feedback_id)
        return promises if check(promises) else None

    return await eventually(current, within=30)


def by_kind(promises: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {p["kind"]: p for p in promises}


async def status_change_event(platform: Platform, feedback_id: str, status: str) -> dict[str, Any]:
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: (
            (e := envelope(r))["subject"] == feedback_id
            and e["type"] == "feedback.status_changed"
            and e["data"]["status"] == status
        ),
        until=lambda found: len(found) >= 1,
    )
    return envelope(records[0])


async def test_default_policies_are_complaint_question_and_detractor(services: Services) -> None:
    response = await services.commitments.get("/v1/response-policies", headers=services.headers)
    assert response.status_code == 200, response.text
    policies = {p["name"]: p for p in response.json()["items"]}
    complaint = policies["complaint"]
    assert complaint["match"] == {"kind": "complaint", "channel": None, "customer_kind": None, "detractor": None}
    assert (complaint["department"], complaint["acknowledge_within_seconds"], complaint["resolve_within_seconds"]) == (
        "support",
        4 * HOUR,
        72 * HOUR,
    )
    assert policies["question"]["acknowledge_within_seconds"] == 24 * HOUR
    assert policies["question"]["match"]["kind"] == "question"
    assert policies["detractor"]["match"]["detractor"] is True
    assert policies["detractor"]["follow_up_within_seconds"] == 48 * HOUR


async def test_complaint_becomes_acknowledge_and_resolve_promises_due_from_its_creation(
    services: Services,
) -> None:
    feedback = await post_feedback(services)
    promises = by_kind(await wait_for_promises(services, feedback["id"], lambda found: len(found) >= 2))
    assert sorted(promises) == ["acknowledge", "resolve"]
    created_at = at(feedback["created_at"])
    assert at(promises["acknowledge"]["due_at"]) == created_at + timedelta(hours=4)
    assert at(promises["resolve"]["due_at"]) == created_at + timedelta(hours=72)
    for promise in promises.values():
        assert promise["source"] == {"type": "feedback", "id": feedback["id"]}
        assert (promise["department"], promise["owner_id"], promise["customer_id"]) == (
            "support",
            "support",
            feedback["customer_id"],
        )
        assert (promise["status"], promise["kept"]) == ("open", None)


async def test_response_promises_are_listed_by_kind(services: Services) -> None:
    feedback = await post_feedback(services)
    await wait_for_promises(services, feedback["id"], lambda found: len(found) >= 2)
    response = await services.commitments.get(
        "/v1/commitments",
        params={"customer_id": feedback["customer_id"], "kind": ["acknowledge", "follow_up"]},
        headers=services.headers,
    )
    assert [c["kind"] for c in response.json()["items"]] == ["acknowledge"]


async def test_status_changes_meet_the_promises_at_their_own_time_and_reopening_opens_a_new_one(
    services: Services, platform: Platform
) -> None:
    feedback = await post_feedback(services)
    await wait_for_promises(services, feedback["id"], lambda found: len(found) >= 2)

    await move(services, feedback["id"], "acknowledged")
    acknowledged = await status_change_event(platform, feedback["id"], "acknowledged")
    promises = by_kind(
        await wait_for_promises(
            services, feedback["id"], lambda found: by_kind(found)["acknowledge"]["status"] != "open"
        )
    )
    acknowledge = promises["acknowledge"]
    assert (acknowledge["status"], acknowledge["kept"]) == ("met_on_time", True)
    assert at(acknowledge["completed_at"]) == at(acknowledged["time"])
    assert promises["resolve"]["status"] == "open"

    await move(services, feedback["id"], "in_progress", "resolved")
    resolved = await status_change_event(platform, feedback["id"], "resolved")
    promises = by_kind(
        await wait_for_promises(services, feedback["id"], lambda found: by_kind(found)["resolve"]["status"] != "open")
    )
    assert (promises["resolve"]["status"], promises["resolve"]["kept"]) == ("met_on_time", True)
    assert at(promises["resolve"]["completed_at"]) == at(resolved["time"])

    await move(services, feedback["id"], "reopened")
    reopened = await status_change_event(platform, feedback["id"], "reopened")
    promises_now = await wait_for_promises(services, feedback["id"], lambda found: len(found) >= 3)
    new_resolve = promises_now[-1]
    assert (new_resolve["kind"], new_resolve["status"]) == ("resolve", "open")
    assert at(new_resolve["due_at"]) == at(reopened["time"]) + timedelta(hours=72)


async def test_question_and_detractor_rating_get_their_promises(services: Services) -> None:
    question = await post_feedback(services, kind="question", text="Do you ship to Norway?")
    detractor = await post_feedback(services, kind="survey_response", text=None, rating={"scale": "nps", "value": 3})
    promoter = await post_feedback(services, kind="survey_response", text=None, rating={"scale": "nps", "value": 10})
    asked = by_kind(await wait_for_promises(services, question["id"], lambda found: len(found) >= 1))
    assert sorted(asked) == ["acknowledge"]
    assert at(asked["acknowledge"]["due_at"]) == at(question["created_at"]) + timedelta(hours=24)
    followed = by_kind(await wait_for_promises(services, detractor["id"], lambda found: len(found) >= 1))
    assert sorted(followed) == ["follow_up"]
    assert at(followed["follow_up"]["due_at"]) == at(detractor["created_at"]) + timedelta(hours=48)
    # The promoter was posted after the detractor by the same client: once a complaint posted after it
    # has its promises, the consumer has been past the promoter.
    marker = await post_feedback(services, customer_id=promoter["customer_id"])
    await wait_for_promises(services, marker["id"], lambda found: len(found) >= 2)
    assert await promises_for(services, promoter["id"]) == []


async def test_a_policy_with_a_two_second_deadline_is_overdue_on_time_in_support_and_management(
    services: Services, platform: Platform
) -> None:
    name = f"fast-{uuid.uuid4().hex[:8]}"
    policy = {"match": {"kind": "complaint", "channel": "focus_group"}, "department": "support"}
    put = await services.commitments.put(
        f"/v1/response-policies/{name}", json={**policy, "acknowledge_within_seconds": 2}, headers=services.headers
    )
    assert put.status_code == 201, put.text
    try:
        feedback = await post_feedback(services, channel="focus_group")
        created_at = at(feedback["created_at"])
        promises = await wait_for_promises(
            services, feedback["id"], lambda found: any(name in (p["description"] or "") for p in found)
        )
        fast = next(p for p in promises if name in (p["description"] or ""))
        assert at(fast["due_at"]) == created_at + timedelta(seconds=2)
        [overdue] = [
            e for e in await events_about(platform, {fast["id"]}, until=3) if e["type"] == "commitment.overdue"
        ]
        assert 0 <= (at(overdue["time"]) - at(fast["due_at"])).total_seconds() < 1.0
        assert (overdue["data"]["kept"], overdue["data"]["broken_because"]) == (False, "overdue")

        async def in_inbox(department: str) -> bool:
            response = await services.notifications.get(
                f"/v1/departments/{department}/notifications", params={"limit": 200}, headers=services.headers
            )
            return any(
                n["subject"] == fast["id"] and n["event_type"] == "commitment.overdue" for n in response.json()["items"]
            )

        for department in ("support", "management"):
            await eventually(lambda department=department: in_inbox(department), within=30)  # type: ignore[misc]
    finally:
        await services.commitments.delete(f"/v1/response-policies/{name}", headers=services.headers)


async def test_the_same_feedback_received_three_times_makes_one_set_of_promises(
    services: Services, platform: Platform
) -> None:
    feedback = await post_feedback(services)
    [received] = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: (e := envelope(r))["subject"] == feedback["id"] and e["type"] == "feedback.received",
        until=lambda found: len(found) >= 1,
    )
    again = {**envelope(received), "id": str(uuid.uuid4())}
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap_servers, acks="all")
    await producer.start()
    try:
        # The same event delivered twice more, and once more produced again under a new id.
        for value in (received.value, received.value, orjson.dumps(again)):
            await producer.send_and_wait(
                platform.topic("feedback.events"), value=value, key=received.key, headers=list(received.headers)
            )
    finally:
        await producer.stop()
    # Same customer, so the same partition: once this one has its promises, the copies were consumed.
    marker = await post_feedback(services, customer_id=feedback["customer_id"])
    await wait_for_promises(services, marker["id"], lambda found: len(found) >= 2)
    assert sorted(p["kind"] for p in await promises_for(services, feedback["id"])) == ["acknowledge", "resolve"]


async def test_policies_are_put_replaced_and_deleted(services: Services, platform: Platform) -> None:
    name = f"vip-{uuid.uuid4().hex[:8]}"
    url = f"/v1/response-policies/{name}"
    body = {"match": {"customer_kind": "internal", "kind": "suggestion"}, "department": "production"}
    created = await services.commitments.put(
        url, json={**body, "follow_up_within_seconds": 600}, headers=services.headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] is None
    replaced = await services.commitments.put(
        url, json={**body, "owner_id": "pat", "follow_up_within_seconds": 900}, headers=services.headers
    )
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["follow_up_within_seconds"], replaced.json()["owner_id"]) == (900, "pat")
    listed = (await services.commitments.get("/v1/response-policies", headers=services.headers)).json()["items"]
    assert [p for p in listed if p["name"] == name] == [replaced.json()]
    assert (await services.commitments.delete(url, headers=services.headers)).status_code == 204
    assert (await services.commitments.delete(url, headers=services.headers)).status_code == 404
    reader = platform.auth("commitments:read")
    assert (
        await services.commitments.put(url, json={**body, "follow_up_within_seconds": 1}, headers=reader)
    ).status_code == 403


@pytest.mark.parametrize(
    ("name", "body", "loc"),
    [
        ("ok", {"department": "legal", "acknowledge_within_seconds": 60}, ["body", "department"]),
        ("ok", {"department": "support"}, ["body"]),
        ("ok", {"department": "support", "resolve_within_seconds": 0}, ["body", "resolve_within_seconds"]),
        ("ok", {"department": "support", "acknowledge_within_seconds": 60, "match": {"kind": "rant"}}, None),
        ("Not A Name", {"department": "support", "acknowledge_within_seconds": 60}, ["path", "name"]),
    ],
)
async def test_invalid_policies_are_422(
    services: Services, name: str, body: dict[str, Any], loc: list[str] | None
) -> None:
    response = await services.commitments.put(f"/v1/response-policies/{name}", json=body, headers=services.headers)
    assert response.status_code == 422, response.text
    if loc is not None:
        assert response.json()["errors"][0]["loc"] == loc


def feedback_event(event_type: str, feedback: dict[str, Any], *, offset: int) -> ConsumedEvent:
    envelope = {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": "/feedback",
        "type": event_type,
        "subject": feedback["id"],
        "time": datetime.now(UTC).isoformat(),
        "customerid": feedback["customer_id"],
        "correlationid": f"correlation-{feedback['id']}",
        "data": feedback,
    }
    return ConsumedEvent(envelope, "feedback.events", 0, offset)


async def test_a_batch_has_the_effects_of_its_events_one_by_one_in_order(platform: Platform) -> None:
    """Received twice (produced again under a new id), then acknowledged, in one consumer batch: one set of
    promises, the acknowledgement met by the status change after them, each event caused by its own."""
    feedback = {
        "id": str(uuid.uuid4()),
        "customer_id": unique("customer"),
        "customer_kind": "external",
        "channel": "email",
        "kind": "complaint",
        "status": "new",
        "created_at": datetime.now(UTC).isoformat(),
    }
    batch = [
        feedback_event("feedback.received", feedback, offset=0),
        feedback_event("feedback.received", feedback, offset=1),
        feedback_event("feedback.status_changed", {**feedback, "status": "acknowledged"}, offset=2),
    ]
    async with sessions_on(platform.database_urls["commitments"]) as sessionmaker, unit_of_work(sessionmaker) as s:
        await FeedbackResponses(commitments_settings(platform)).handle(s, batch)
        promises = (
            await s.execute(
                text("SELECT kind, status FROM commitment WHERE source_id = :id ORDER BY kind"), {"id": feedback["id"]}
            )
        ).all()
        events = [
            orjson.loads(value)
            for value in (
                await s.execute(
                    text("SELECT value FROM outbox_event WHERE key = :key ORDER BY id"),
                    {"key": feedback["customer_id"]},
                )
            ).scalars()
        ]
    assert [tuple(p) for p in promises] == [("acknowledge", "met_on_time"), ("resolve", "open")]
    assert [(e["type"], e["data"]["kind"], e["causationid"]) for e in events] == [
        ("commitment.created", "acknowledge", batch[0].id),
        ("commitment.created", "resolve", batch[0].id),
        ("commitment.met", "acknowledge", batch[2].id),
    ]
    assert {e["correlationid"] for e in events} == {f"correlation-{feedback['id']}"}
