"""The meeting brief: each section from a known story of events, questions of the bank matched to its themes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from shared import catalogue
from tests.customers.support import timeline_with
from tests.notifications.helpers import EventPublisher, commitment, customer, expectation, feedback
from tests.support.platform import Platform
from tests.support.waiting import eventually


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat().replace("+00:00", "Z")


def question(text: str, topic: str, *, open_ended: bool = True) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "text": text,
        "topic": topic,
        "open_ended": open_ended,
        "rule": "question_word" if open_ended else "leading_auxiliary",
        "guidance": None if open_ended else "Closed: reopen it.",
        "created_at": ago(seconds=1),
    }


async def add_to_bank(publisher: EventPublisher, *questions: dict[str, Any]) -> None:
    # Keyed by the question's own id: it is about no customer (contract §2).
    for added in questions:
        await publisher.publish(catalogue.QUESTION_CREATED, added, customer_id=added["id"])


async def brief_of(client: httpx.AsyncClient, headers: dict[str, str], customer_id: str) -> dict[str, Any]:
    response = await client.get(f"/v1/customers/{customer_id}/brief", headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_brief_tells_the_customers_story_section_by_section(
    client: httpx.AsyncClient, publisher: EventPublisher, writer: dict[str, str], reader: dict[str, str]
) -> None:
    customer_id = customer()
    tag = uuid.uuid4().hex[:8]
    delivery, billing = f"delivery_{tag}", f"billing_{tag}"
    profile = {
        "name": "Acme Logistics",
        "awareness": {"knows_we_exist": True, "knows_our_capabilities": False, "knows_who_to_contact": None},
    }
    assert (await client.put(f"/v1/customers/{customer_id}", json=profile, headers=writer)).status_code == 201

    heard = {**expectation(customer_id), "statement": "Deliveries before 9 am, every day."}
    gap = {**expectation(customer_id, capability="cannot_meet", status="confirmed"), "statement": "Weekend delivery."}
    broken = {**commitment(customer_id, status="overdue"), "title": "Refund the March invoice", "kept": False}
    broken["broken_because"] = "overdue"
    kept = {**commitment(customer_id, status="met_on_time"), "title": "Call back", "kept": True}
    story = [
        (catalogue.FEEDBACK_RECEIVED, feedback(customer_id, themes=[delivery, billing], occurred_at=ago(days=1))),
        (catalogue.FEEDBACK_RECEIVED, feedback(customer_id, themes=[delivery], occurred_at=ago(days=2))),
        # Older than the brief's 90 days: its theme is not recent.
        (catalogue.FEEDBACK_RECEIVED, feedback(customer_id, themes=[f"old_{tag}"], occurred_at=ago(days=200))),
        # Praise is no complaint: its theme is not a complaint theme.
        (
            catalogue.FEEDBACK_RECEIVED,
            feedback(customer_id, "praise", themes=[f"praise_{tag}"], occurred_at=ago(days=1)),
        ),
        (
            catalogue.FEEDBACK_RECEIVED,
            feedback(customer_id, "survey_response", rating={"scale": "nps", "value": 3}, occurred_at=ago(days=10)),
        ),
        (
            catalogue.FEEDBACK_RECEIVED,
            feedback(customer_id, "survey_response", rating={"scale": "nps", "value": 8}, occurred_at=ago(days=3)),
        ),
        (
            catalogue.FEEDBACK_RECEIVED,
            feedback(customer_id, "survey_response", rating={"scale": "csat", "value": 4}, occurred_at=ago(days=5)),
        ),
        (catalogue.EXPECTATION_RECORDED, heard),
        (catalogue.EXPECTATION_RECORDED, gap),
        (catalogue.COMMITMENT_CREATED, commitment(customer_id)),
        (catalogue.COMMITMENT_OVERDUE, broken),
        (catalogue.COMMITMENT_MET, kept),
    ]
    records = [await publisher.publish(spec, data, customer_id=customer_id) for spec, data in story]
    for record in records:
        await timeline_with(client, reader, customer_id, record.event_id)

    brief = await brief_of(client, reader, customer_id)

    assert brief["customer_id"] == customer_id
    assert brief["name"] == "Acme Logistics"
    [unconfirmed] = brief["unconfirmed_expectations"]
    assert unconfirmed["expectation_id"] == heard["id"]
    assert unconfirmed["statement"] == "Deliveries before 9 am, every day."
    assert unconfirmed["restatement"] == heard["restatement"]
    [capability_gap] = brief["capability_gaps"]
    assert (capability_gap["expectation_id"], capability_gap["capability"]) == (gap["id"], "cannot_meet")
    assert capability_gap["statement"] == "Weekend delivery."
    assert sorted(p["status"] for p in brief["open_promises"]) == ["open", "overdue"]
    [broken_promise] = brief["broken_promises"]
    assert broken_promise["commitment_id"] == broken["id"]
    assert broken_promise["title"] == "Refund the March invoice"
    assert broken_promise["broken_because"] == "overdue"
    assert broken_promise["broken_at"] is not None
    assert [(t["theme"], t["complaints"]) for t in brief["complaint_themes"]] == [(delivery, 2), (billing, 1)]
    assert {(s["scale"], s["value"]) for s in brief["latest_scores"]} == {("nps", 8.0), ("csat", 4.0)}
    assert brief["awareness_gaps"] == [
        {"question": "knows_our_capabilities", "answer": False},
        {"question": "knows_who_to_contact", "answer": None},
    ]


async def test_suggested_questions_are_the_open_ended_ones_whose_topic_matches_a_theme(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str], writer: dict[str, str]
) -> None:
    customer_id = customer()
    tag = uuid.uuid4().hex[:8]
    # A theme key matches a topic that is the key or its leading words ("support_<tag>" of "support_<tag>_speed").
    delivery_theme, support_theme = f"delivery_{tag}", f"support_{tag}_responsiveness"
    on_delivery = question("What would a good delivery look like for you?", f"Delivery {tag}")
    closed_on_delivery = question("Was the delivery on time?", f"delivery {tag}", open_ended=False)
    on_support = question("How did our support answer you last time?", f"support-{tag}")
    on_pricing = question("What do you think of our prices?", f"pricing {tag}")
    everyone_knows = {"knows_we_exist": True, "knows_our_capabilities": True, "knows_who_to_contact": True}
    profile = {"awareness": everyone_knows}
    assert (await client.put(f"/v1/customers/{customer_id}", json=profile, headers=writer)).status_code == 201
    await add_to_bank(publisher, on_delivery, closed_on_delivery, on_support, on_pricing)
    complaint = feedback(customer_id, themes=[delivery_theme, support_theme], occurred_at=ago(hours=1))
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, complaint, customer_id=customer_id)

    async def suggested() -> list[dict[str, Any]] | None:
        found: list[dict[str, Any]] = (await brief_of(client, reader, customer_id))["suggested_questions"]
        return found if len(found) == 2 else None

    suggestions = await eventually(suggested)

    assert [(s["question_id"], s["themes"]) for s in suggestions] == [
        (on_delivery["id"], [delivery_theme]),
        (on_support["id"], [support_theme]),
    ]
    assert suggestions[0]["text"] == on_delivery["text"]
    assert suggestions[0]["topic"] == f"Delivery {tag}"
    assert (await brief_of(client, reader, customer_id))["awareness_gaps"] == []


async def test_a_question_added_to_the_bank_makes_no_customer_and_no_timeline_entry(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str], writer: dict[str, str]
) -> None:
    customer_id = customer()
    # Nobody asked whether it knows us: an awareness gap, so questions on "awareness" are suggested.
    assert (await client.put(f"/v1/customers/{customer_id}", json={}, headers=writer)).status_code == 201
    added = question("How did you first hear about us?", "Awareness")
    await add_to_bank(publisher, added)

    async def suggested() -> bool:
        brief = await brief_of(client, reader, customer_id)
        return any(s["question_id"] == added["id"] for s in brief["suggested_questions"])

    await eventually(suggested)

    # The question is in the bank: had its event made a customer, it would be there by now (same batch or earlier).
    assert (await client.get(f"/v1/customers/{added['id']}", headers=reader)).status_code == 404
    assert (await client.get(f"/v1/customers/{added['id']}/timeline", headers=reader)).status_code == 404


async def test_the_brief_of_an_unknown_customer_is_a_404(client: httpx.AsyncClient, reader: dict[str, str]) -> None:
    response = await client.get(f"/v1/customers/{customer()}/brief", headers=reader)
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_the_brief_needs_a_token_with_customers_read(client: httpx.AsyncClient, platform: Platform) -> None:
    path = f"/v1/customers/{customer()}/brief"
    assert (await client.get(path)).status_code == 401
    assert (await client.get(path, headers=platform.auth("feedback:read"))).status_code == 403
