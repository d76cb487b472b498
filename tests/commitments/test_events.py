"""Every commitment event reaches commitments.events as a CloudEvent an integrator can read."""

from __future__ import annotations

from typing import Any

import httpx
from cloudevents.core.bindings.kafka import KafkaMessage, from_structured
from cloudevents.core.formats.json import JSONFormat

from tests.commitments.support import create, in_seconds, unique
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform


def as_cloudevent(record: Record) -> Any:
    message = KafkaMessage(headers=dict(record.headers), key=record.key, value=record.value)
    return from_structured(message, JSONFormat())


async def test_commitment_lifecycle_is_published_as_cloudevents(client: httpx.AsyncClient, platform: Platform) -> None:
    writer = platform.auth("commitments:read", "commitments:write")
    customer = unique("customer")
    kept = await create(client, writer, customer_id=customer)
    rescheduled = (
        await client.post(
            f"/v1/commitments/{kept['id']}/reschedule",
            json={"due_at": in_seconds(172_800).isoformat(), "reason": "Customer is away this week."},
            headers=writer,
        )
    ).json()
    met = (await client.post(f"/v1/commitments/{kept['id']}/complete", headers=writer)).json()
    dropped = await create(client, writer, customer_id=customer)
    cancelled = (await client.post(f"/v1/commitments/{dropped['id']}/cancel", headers=writer)).json()
    expected: list[tuple[str, dict[str, Any]]] = [
        ("commitment.created", kept),
        ("commitment.rescheduled", rescheduled),
        ("commitment.met", met),
        ("commitment.created", dropped),
        ("commitment.cancelled", cancelled),
    ]

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("commitments.events"),
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= len(expected),
    )

    # One customer's events share a key, hence a partition, hence their order.
    assert len({r.partition for r in records}) == 1
    assert len(records) == len(expected)
    for record, (event_type, representation) in zip(records, expected, strict=True):
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        event = as_cloudevent(record)
        assert event.get_type() == event_type
        assert event.get_source() == "/customer-focus/commitments"
        assert event.get_subject() == representation["id"]
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("customerid") == customer
        assert event.get_extension("correlationid")
        assert event.get_extension("traceparent")
        assert event.get_data() == representation
    assert rescheduled["previous_due_at"] == kept["due_at"]
