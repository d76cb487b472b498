"""Events end to end: a real aiokafka consumer reads feedback.events; the CloudEvents SDK parses them."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured_event

from tests.feedback.conftest import capture, complaint, new_customer
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform


def _message(record: Record) -> KafkaMessage:
    return KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)


def _data(record: Record) -> dict[str, Any]:
    """The event's `data`, as the CloudEvents SDK parses it."""
    data = from_structured_event(_message(record)).get_data()
    assert isinstance(data, dict)
    return data


async def test_capture_and_move_publish_cloudevents_whose_data_is_the_rest_representation(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    started = datetime.now(UTC) - timedelta(seconds=5)
    created = await capture(client, platform, complaint(customer))
    moved = await client.patch(
        f"/v1/feedback/{created['id']}",
        json={"status": "acknowledged", "note": "On it"},
        headers={**platform.auth("feedback:write", sub="agent-9"), "traceparent": _TRACEPARENT},
    )
    assert moved.status_code == 200

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= 2,
    )

    assert len(records) == 2
    assert {record.partition for record in records} == {records[0].partition}
    received, changed = (from_structured_event(_message(record)) for record in records)
    created_data, changed_data = (_data(record) for record in records)
    for record in records:
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"

    assert received.get_type() == "feedback.received"
    assert received.get_specversion() == "1.0"
    assert received.get_source() == "/customer-focus/feedback"
    assert received.get_subject() == created["id"]
    assert received.get_datacontenttype() == "application/json"
    assert uuid.UUID(received.get_id())
    time = received.get_time()
    assert time is not None
    assert started <= time <= datetime.now(UTC)
    assert received.get_extension("customerid") == customer
    assert received.get_extension("correlationid")
    assert created_data == created

    assert changed.get_type() == "feedback.status_changed"
    assert changed.get_subject() == created["id"]
    assert changed_data == {**moved.json(), "previous_status": "new"}
    assert changed_data["history"][0]["changed_by"] == "agent-9"
    assert changed.get_extension("traceparent").split("-")[1] == _TRACEPARENT.split("-")[1]
    assert changed.get_id() != received.get_id()


async def test_rejected_feedback_publishes_nothing(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    rejected = await client.post(
        "/v1/feedback", json=complaint(customer, text=None), headers=platform.auth("feedback:write")
    )
    assert rejected.status_code == 422
    # A later event of the same customer (same key, same partition) proves the relay has passed that point.
    await capture(client, platform, complaint(customer))

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= 1,
        within=10,
    )
    assert len(records) == 1
    assert _data(records[0])["text"] is not None


_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_concurrent_captures_each_store_one_row_and_publish_their_own_event(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    # Arriving together, captures are written several to a statement (shared/group_commit.py): each
    # still gets its own row, its own event and a 201 that matches both.
    customer = new_customer()
    texts = [f"Parcel {n} arrived late and damaged." for n in range(60)]
    created = await asyncio.gather(*(capture(client, platform, complaint(customer, text=text)) for text in texts))

    assert sorted(c["text"] for c in created) == sorted(texts)
    rows = await platform.fetch("feedback", "SELECT id, text FROM feedback WHERE customer_id = $1", customer)
    assert {str(row["id"]): row["text"] for row in rows} == {c["id"]: c["text"] for c in created}
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= len(texts),
    )
    assert sorted((_data(record) for record in records), key=lambda d: d["id"]) == sorted(
        created, key=lambda c: c["id"]
    )
