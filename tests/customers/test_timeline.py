"""The timeline: every event about a customer, newest first, with a summary and lineage; once per event."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx

from services.customers.schemas import TimelineEntry
from shared import catalogue
from shared.pagination import Page
from tests.customers.support import timeline, timeline_with
from tests.notifications.helpers import EventPublisher, commitment, customer, expectation, feedback, meeting
from tests.support.platform import Platform


async def test_a_customer_first_seen_in_an_event_exists_from_then_on(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    assert (await client.get(f"/v1/customers/{customer_id}", headers=reader)).status_code == 404

    record = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, customer_kind="internal"), customer_id=customer_id
    )
    await timeline_with(client, reader, customer_id, record.event_id)

    response = await client.get(f"/v1/customers/{customer_id}", headers=reader)
    assert response.status_code == 200
    body = response.json()
    assert body["customer_id"] == customer_id
    assert body["customer_kind"] == "internal"
    assert body["profiled"] is False
    assert body["name"] is None
    assert "open_complaints" in [reason["factor"] for reason in body["health"]["reasons"]]
    # Never surveyed: due the default interval (182 days) after it was first seen.
    first_seen = datetime.fromisoformat(body["first_seen_at"])
    assert datetime.fromisoformat(body["next_survey_due_at"]) == first_seen + timedelta(days=182)
    assert body["last_contact_at"] == "2026-11-22T10:00:00Z"


async def test_the_timeline_is_newest_first_and_pages_without_skipping_or_repeating(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    complaint = feedback(customer_id)
    records = [
        await publisher.publish(catalogue.FEEDBACK_RECEIVED, complaint, customer_id=customer_id),
        await publisher.publish(catalogue.MEETING_RECORDED, meeting(customer_id), customer_id=customer_id),
        await publisher.publish(catalogue.COMMITMENT_CREATED, commitment(customer_id), customer_id=customer_id),
        await publisher.publish(
            catalogue.FEEDBACK_STATUS_CHANGED,
            {**complaint, "status": "acknowledged", "previous_status": "new"},
            customer_id=customer_id,
        ),
    ]
    # Three topics: wait for each event, not only the last one sent.
    for record in records:
        await timeline_with(client, reader, customer_id, record.event_id)

    items = (await timeline(client, reader, customer_id))["items"]
    assert [item["event_id"] for item in items] == [str(r.event_id) for r in reversed(records)]
    assert [item["type"] for item in items] == [
        "feedback.status_changed",
        "commitment.created",
        "meeting.recorded",
        "feedback.received",
    ]
    assert items[0]["subject"] == complaint["id"]
    assert items[0]["summary"] == "Complaint moved from new to acknowledged"
    assert items[2]["summary"] == "Meeting with Cy, held by Ann, Bo"
    assert items[3]["summary"] == f"Complaint by email: “A complaint from {customer_id}”"

    first = await timeline(client, reader, customer_id, limit=3)
    second = await timeline(client, reader, customer_id, limit=3, cursor=first["next_cursor"])
    assert [i["event_id"] for i in first["items"] + second["items"]] == [i["event_id"] for i in items]
    assert second["next_cursor"] is None

    # The page is written straight from its rows: exactly what the schema would write, field for field.
    assert Page[TimelineEntry].model_validate(first).model_dump(mode="json") == first
    assert Page[TimelineEntry].model_validate(second).model_dump(mode="json") == second

    only = await timeline(client, reader, customer_id, type="meeting.recorded")
    assert [i["event_id"] for i in only["items"]] == [str(records[1].event_id)]


async def test_one_customer_s_timeline_holds_none_of_another_s_events(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    ours, theirs = customer(), customer()
    mine = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(ours), customer_id=ours)
    other = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(theirs), customer_id=theirs)

    await timeline_with(client, reader, theirs, other.event_id)
    items = await timeline_with(client, reader, ours, mine.event_id)

    assert [item["event_id"] for item in items] == [str(mine.event_id)]
    assert [item["event_id"] for item in (await timeline(client, reader, theirs))["items"]] == [str(other.event_id)]


async def test_links_follow_the_lineage_of_a_promise_and_an_expectation(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    complaint = feedback(customer_id)
    promise = {**commitment(customer_id), "source": {"type": "feedback", "id": complaint["id"]}}
    heard = {**expectation(customer_id, capability="cannot_meet"), "question_id": str(uuid.uuid4())}

    made = await publisher.publish(catalogue.COMMITMENT_CREATED, promise, customer_id=customer_id)
    recorded = await publisher.publish(catalogue.EXPECTATION_RECORDED, heard, customer_id=customer_id)
    gap = await publisher.publish(catalogue.EXPECTATION_GAP_IDENTIFIED, heard, customer_id=customer_id)
    await timeline_with(client, reader, customer_id, made.event_id)
    items = {item["event_id"]: item for item in await timeline_with(client, reader, customer_id, gap.event_id)}

    assert items[str(made.event_id)]["links"] == [{"rel": "source", "type": "feedback", "id": complaint["id"]}]
    assert items[str(made.event_id)]["summary"].startswith(
        "Promise made: “Ship the fix”, by production, due 2026-12-01"
    )
    meeting_link = {"rel": "meeting", "type": "meeting", "id": heard["meeting_id"]}
    question_link = {"rel": "question", "type": "question", "id": heard["question_id"]}
    assert items[str(recorded.event_id)]["links"] == [meeting_link, question_link]
    assert items[str(gap.event_id)]["links"] == [meeting_link, question_link]
    assert items[str(gap.event_id)]["summary"] == "Capability gap (cannot meet): “It must be fast”"


async def test_a_redelivered_event_adds_nothing(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    await timeline_with(client, reader, customer_id, record.event_id)

    await publisher.send(record)  # the same CloudEvent, same id, again
    # Later on the same key (partition): once it shows, the copy before it was handled.
    marker = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    items = await timeline_with(client, reader, customer_id, marker.event_id)

    assert [item["event_id"] for item in items] == [str(marker.event_id), str(record.event_id)]
    counts = (await client.get(f"/v1/customers/{customer_id}", headers=reader)).json()["counts"]
    assert counts["feedback"] == 2


async def test_the_counts_follow_each_item_s_latest_state(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    complaint, praise = feedback(customer_id), feedback(customer_id, "compliment")
    survey = feedback(
        customer_id, "survey_response", rating={"scale": "nps", "value": 3}, occurred_at="2026-11-23T08:00:00Z"
    )
    kept, late, open_promise = commitment(customer_id), commitment(customer_id), commitment(customer_id)
    unconfirmed, confirmed = expectation(customer_id, capability="partial"), expectation(customer_id)
    publish = publisher.publish
    for spec, data in (
        (catalogue.FEEDBACK_RECEIVED, complaint),
        (catalogue.FEEDBACK_RECEIVED, praise),
        (catalogue.FEEDBACK_RECEIVED, survey),
        (catalogue.FEEDBACK_STATUS_CHANGED, {**praise, "status": "closed", "previous_status": "new"}),
        (catalogue.COMMITMENT_CREATED, kept),
        (catalogue.COMMITMENT_CREATED, late),
        (catalogue.COMMITMENT_CREATED, open_promise),
        (catalogue.COMMITMENT_MET, {**kept, "status": "met_on_time", "kept": True}),
        (catalogue.COMMITMENT_OVERDUE, {**late, "status": "overdue", "kept": False, "broken_because": "overdue"}),
        (catalogue.EXPECTATION_RECORDED, unconfirmed),
        (catalogue.EXPECTATION_GAP_IDENTIFIED, unconfirmed),
        (catalogue.EXPECTATION_RECORDED, confirmed),
        (catalogue.EXPECTATION_CONFIRMED, {**confirmed, "status": "confirmed"}),
    ):
        last = await publish(spec, data, customer_id=customer_id)
        await timeline_with(client, reader, customer_id, last.event_id)

    body = (await client.get(f"/v1/customers/{customer_id}", headers=reader)).json()
    assert body["counts"] == {
        "feedback": 3,
        "open_complaints": 1,
        "open_promises": 2,
        "broken_promises": 1,
        "unconfirmed_expectations": 1,
        "capability_gaps": 1,
    }
    assert body["last_survey_at"] == "2026-11-23T08:00:00Z"
    assert body["last_contact_at"] == "2026-11-23T08:00:00Z"


async def test_an_unknown_customer_has_no_timeline(client: httpx.AsyncClient, reader: dict[str, str]) -> None:
    response = await client.get(f"/v1/customers/{customer()}/timeline", headers=reader)

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_timeline_refuses_a_forged_cursor(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    await timeline_with(client, reader, customer_id, record.event_id)

    response = await client.get(
        f"/v1/customers/{customer_id}/timeline", params={"cursor": "not-a-cursor"}, headers=reader
    )

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "cursor"]


async def test_an_event_is_handled_within_a_second_of_reaching_its_topic(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str], platform: Platform
) -> None:
    customer_id = customer()
    # The consumer has joined its group: a first event of this customer is on the timeline.
    first = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    await timeline_with(client, reader, customer_id, first.event_id)

    sent: dict[str, datetime] = {}
    for _ in range(5):
        before = datetime.now(UTC)  # the event reaches its topic after this moment
        record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
        sent[str(record.event_id)] = before
        await timeline_with(client, reader, customer_id, record.event_id)

    # The moment each was handled, as the transaction that wrote its entry recorded it (the database's clock,
    # the machine's), not when this test happened to look.
    rows = await platform.fetch(
        "customers",
        "SELECT event_id, processed_at FROM processed_event WHERE consumer = 'cf-customers-timeline' "
        "AND event_id = ANY($1::text[])",
        list(sent),
    )
    lags = {row["event_id"]: row["processed_at"] - sent[row["event_id"]] for row in rows}
    assert len(lags) == len(sent)
    assert all(lag < timedelta(seconds=1) for lag in lags.values()), lags
