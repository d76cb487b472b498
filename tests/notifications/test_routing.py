"""Routing: the contract's default rules, rules changed at runtime, duplicates, the department topics."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from cloudevents.core.bindings import kafka as cloudevents_kafka

from shared import catalogue
from shared.catalogue import EventSpec
from shared.events import CONTENT_TYPE, OutboxRecord, build_event
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import EventPublisher, commitment, customer, expectation, feedback, meeting
from tests.support.kafka import read_topic
from tests.support.platform import Platform

DEPARTMENTS = ("sales", "support", "production", "management")


def verdict(*, accepted: bool) -> dict[str, Any]:
    return {
        "accepted": accepted,
        "fairness": 2,
        "comment": None,
        "given_at": "2026-11-22T11:00:00Z",
        "given_by": "customer",
    }


Case = tuple[EventSpec, Callable[[str], dict[str, Any]], set[str]]
DEFAULT_RULE_CASES: dict[str, Case] = {
    "complaint": (catalogue.FEEDBACK_RECEIVED, lambda c: feedback(c, "complaint"), {"support", "management"}),
    "nps-detractor": (
        catalogue.FEEDBACK_RECEIVED,
        lambda c: feedback(c, "survey_response", rating={"scale": "nps", "value": 6}),
        {"support", "management"},
    ),
    "csat-detractor": (
        catalogue.FEEDBACK_RECEIVED,
        lambda c: feedback(c, "survey_response", rating={"scale": "csat", "value": 2}),
        {"support", "management"},
    ),
    "ces-detractor": (
        catalogue.FEEDBACK_RECEIVED,
        lambda c: feedback(c, "survey_response", rating={"scale": "ces", "value": 5}),
        {"support", "management"},
    ),
    "compliment": (catalogue.FEEDBACK_RECEIVED, lambda c: feedback(c, "compliment"), {"sales"}),
    "nps-promoter": (
        catalogue.FEEDBACK_RECEIVED,
        lambda c: feedback(c, "survey_response", rating={"scale": "nps", "value": 9}),
        {"sales"},
    ),
    "nps-passive-goes-nowhere": (
        catalogue.FEEDBACK_RECEIVED,
        lambda c: feedback(c, "survey_response", rating={"scale": "nps", "value": 7}),
        set(),
    ),
    "suggestion": (catalogue.FEEDBACK_RECEIVED, lambda c: feedback(c, "suggestion"), {"production"}),
    "question": (catalogue.FEEDBACK_RECEIVED, lambda c: feedback(c, "question"), {"support"}),
    "reopened": (
        catalogue.FEEDBACK_STATUS_CHANGED,
        lambda c: feedback(c, status="reopened", previous_status="closed"),
        {"support", "management"},
    ),
    "acknowledged-goes-nowhere": (
        catalogue.FEEDBACK_STATUS_CHANGED,
        lambda c: feedback(c, status="acknowledged", previous_status="new"),
        set(),
    ),
    "verdict-rejected": (
        catalogue.FEEDBACK_VERDICT_GIVEN,
        lambda c: feedback(c, status="reopened", verdict=verdict(accepted=False)),
        {"support", "management"},
    ),
    "verdict-accepted-goes-nowhere": (
        catalogue.FEEDBACK_VERDICT_GIVEN,
        lambda c: feedback(c, status="closed", verdict=verdict(accepted=True)),
        set(),
    ),
    "meeting": (catalogue.MEETING_RECORDED, meeting, {"sales"}),
    "expectation-recorded-goes-nowhere": (catalogue.EXPECTATION_RECORDED, expectation, set()),
    "expectation-confirmed": (
        catalogue.EXPECTATION_CONFIRMED,
        lambda c: expectation(c, status="confirmed"),
        {"sales", "production"},
    ),
    "expectation-gap": (
        catalogue.EXPECTATION_GAP_IDENTIFIED,
        lambda c: expectation(c, capability="cannot_meet"),
        {"production", "management"},
    ),
    "commitment-created": (catalogue.COMMITMENT_CREATED, lambda c: commitment(c, "production"), {"production"}),
    "commitment-due-soon": (
        catalogue.COMMITMENT_DUE_SOON,
        lambda c: commitment(c, "support", "due_soon"),
        {"support"},
    ),
    "commitment-rescheduled": (
        catalogue.COMMITMENT_RESCHEDULED,
        lambda c: {**commitment(c, "sales"), "previous_due_at": "2026-11-30T10:00:00Z"},
        {"sales"},
    ),
    "commitment-cancelled": (
        catalogue.COMMITMENT_CANCELLED,
        lambda c: commitment(c, "production", "cancelled"),
        {"production"},
    ),
    "commitment-met-on-time": (
        catalogue.COMMITMENT_MET,
        lambda c: commitment(c, "production", "met_on_time"),
        {"production"},
    ),
    "commitment-met-late": (
        catalogue.COMMITMENT_MET,
        lambda c: commitment(c, "production", "met_late"),
        {"production", "management"},
    ),
    "commitment-overdue": (
        catalogue.COMMITMENT_OVERDUE,
        lambda c: commitment(c, "support", "overdue"),
        {"support", "management"},
    ),
}


async def departments_reached(service: RunningService, platform: Platform, record: OutboxRecord) -> dict[str, int]:
    """How many notifications of the event each department's inbox holds."""
    reached: dict[str, int] = {}
    for department in DEPARTMENTS:
        response = await service.client.get(
            f"/v1/departments/{department}/notifications",
            params={"event_id": str(record.event_id)},
            headers=platform.auth("notifications:read"),
        )
        assert response.status_code == 200, response.text
        if response.json()["items"]:
            reached[department] = len(response.json()["items"])
    return reached


@pytest.mark.parametrize("case", list(DEFAULT_RULE_CASES), ids=list(DEFAULT_RULE_CASES))
async def test_default_rule_routes_event_to_its_departments(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, case: str
) -> None:
    spec, make, expected = DEFAULT_RULE_CASES[case]
    customer_id = customer()
    record = await publisher.publish(spec, make(customer_id), customer_id=customer_id)
    await publisher.processed(record)
    assert await departments_reached(notifications, platform, record) == dict.fromkeys(expected, 1)


@pytest.mark.parametrize(("band", "expected"), [("red", {"sales", "management"}), ("amber", set()), ("green", set())])
async def test_a_customer_s_health_turning_red_reaches_sales_and_management(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, band: str, expected: set[str]
) -> None:
    customer_id = customer()
    # The part of the customer (as the customers service publishes it) the rule reads: its new band.
    data = {
        "customer_id": customer_id,
        "health": {"score": 30, "band": band, "reasons": [{"factor": "nps", "effect": -25, "detail": "NPS 2"}]},
        "previous_band": "amber" if band != "amber" else "green",
    }
    record = build_event(catalogue.CUSTOMER_HEALTH_CHANGED, data=data, subject=customer_id, customer_id=customer_id)
    await publisher.send(record)
    await publisher.processed(record)
    assert await departments_reached(notifications, platform, record) == dict.fromkeys(expected, 1)


async def test_a_customer_due_for_a_survey_reaches_sales(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    # The part of the customer (as the customers service publishes it) a reader of the survey looks at.
    data = {"customer_id": customer_id, "survey_due": True, "next_survey_due_at": "2027-06-05T10:00:00Z"}
    record = build_event(catalogue.CUSTOMER_SURVEY_DUE, data=data, subject=customer_id, customer_id=customer_id)
    await publisher.send(record)
    await publisher.processed(record)
    assert await departments_reached(notifications, platform, record) == {"sales": 1}


async def test_a_theme_spike_reaches_production_and_management_and_reads_as_one(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    theme = f"delivery_{uuid.uuid4().hex[:8]}"
    summary = f"Theme '{theme}' is spiking: 12 complaints in the last hour, 4.0× its baseline"
    data = {
        "theme": theme,
        "window_start": "2026-12-05T09:00:00Z",
        "window_end": "2026-12-05T10:00:00Z",
        "count": 12,
        "baseline": 3.0,
        "ratio": 4.0,
        "summary": summary,
    }
    # About no customer: keyed by its subject, the theme (contract §2), as the feedback service writes it.
    record = build_event(catalogue.FEEDBACK_THEME_SPIKING, data=data, subject=theme, customer_id=theme)
    await publisher.send(record)
    await publisher.processed(record)
    assert await departments_reached(notifications, platform, record) == {"production": 1, "management": 1}
    inbox = await notifications.client.get(
        "/v1/departments/production/notifications",
        params={"event_id": str(record.event_id)},
        headers=platform.auth("notifications:read"),
    )
    [notification] = inbox.json()["items"]
    assert notification["event"]["data"]["summary"] == summary


async def test_rule_changed_at_runtime_applies_to_the_next_event(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    admin = platform.auth("notifications:admin", "notifications:read")
    customer_id = customer()
    passive = {"scale": "nps", "value": 7}  # no default rule routes a passive score
    rule = {
        "name": f"Everything about {customer_id}",
        "event_types": ["feedback.*"],
        "condition": {"field": "customer_id", "op": "eq", "value": customer_id},
        "departments": ["sales"],
    }
    created = await notifications.client.post("/v1/routing-rules", json=rule, headers=admin)
    assert created.status_code == 201, created.text
    rule_id = created.json()["id"]

    first = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=passive), customer_id=customer_id
    )
    await publisher.processed(first)
    assert await departments_reached(notifications, platform, first) == {"sales": 1}

    replaced = await notifications.client.put(
        f"/v1/routing-rules/{rule_id}", json={**rule, "departments": ["production"]}, headers=admin
    )
    assert replaced.status_code == 200, replaced.text
    second = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=passive), customer_id=customer_id
    )
    await publisher.processed(second)
    assert await departments_reached(notifications, platform, second) == {"production": 1}

    assert (await notifications.client.delete(f"/v1/routing-rules/{rule_id}", headers=admin)).status_code == 204
    third = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=passive), customer_id=customer_id
    )
    await publisher.processed(third)
    assert await departments_reached(notifications, platform, third) == {}


async def test_duplicate_event_gives_one_notification_per_department(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    await publisher.send(record)
    await publisher.send(record)
    # Same key, same partition: once the marker is handled, both copies before it were too.
    marker = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question"), customer_id=customer_id
    )
    await publisher.processed(marker)

    assert await departments_reached(notifications, platform, record) == {"support": 1, "management": 1}
    on_topic = await read_topic(
        platform.bootstrap_servers,
        platform.topic("notifications.management"),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: len(found) >= 1,
        within=5,
    )
    copies = [r for r in on_topic if orjson.loads(r.value)["id"] == str(record.event_id)]
    assert len(copies) == 1


@pytest.mark.usefixtures("notifications")
async def test_department_topic_carries_the_same_cloudevent_with_its_department(
    publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    record = await publisher.publish(
        catalogue.COMMITMENT_OVERDUE, commitment(customer_id, "production", "overdue"), customer_id=customer_id
    )
    original = orjson.loads(record.value)

    for department in ("production", "management"):
        found = await read_topic(
            platform.bootstrap_servers,
            platform.topic(f"notifications.{department}"),
            where=lambda r: r.key == customer_id.encode(),
            until=lambda found: len(found) >= 1,
        )
        assert len(found) == 1
        message = found[0]
        assert dict(message.headers)["content-type"] == CONTENT_TYPE.encode()
        event = cloudevents_kafka.from_structured_event(
            cloudevents_kafka.KafkaMessage(headers=dict(message.headers), key=message.key, value=message.value)
        )
        assert event.get_id() == str(record.event_id)
        assert event.get_type() == "commitment.overdue"
        assert event.get_data() == original["data"]
        assert event.get_extension("department") == department
        assert event.get_extension("customerid") == customer_id


async def test_event_that_is_not_a_uuid_id_goes_to_the_dead_letter_topic(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    data = feedback(customer_id)
    bad = orjson.loads(
        build_event(catalogue.FEEDBACK_RECEIVED, data=data, subject=data["id"], customer_id=customer_id).value
    )
    bad["id"] = f"not-a-uuid-{uuid.uuid4().hex}"
    await publisher.producer.send_and_wait(
        platform.topic("feedback.events"), value=orjson.dumps(bad), key=customer_id.encode()
    )
    marker = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question"), customer_id=customer_id
    )
    await publisher.processed(marker, within=20)

    dead = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events.dlq"),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: len(found) >= 1,
    )
    assert [orjson.loads(r.value)["id"] for r in dead] == [bad["id"]]
    assert await departments_reached(notifications, platform, marker) == {"support": 1}
