"""Events on expectations.events, read back with a real aiokafka consumer as a dashboard would."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka
from cloudevents.core.formats.json import JSONFormat

from tests.expectations.factories import (
    customer_with_expectation,
    expectation,
    expectation_body,
    meeting,
    question,
    unique,
)
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform

CONFIRMATION = {"confirmed_by": "Chris Customer", "note": None}


async def events_of(
    platform: Platform, customer_id: str, *, until: Callable[[list[dict[str, Any]]], bool]
) -> list[dict[str, Any]]:
    """The CloudEvents keyed by `customer_id`, in order, once `until` holds for them."""
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("expectations.events"),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: until([orjson.loads(r.value) for r in found]),
    )
    return [orjson.loads(r.value) for r in records]


def types_of(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]


async def test_meeting_and_expectation_events_are_cloudevents_keyed_by_customer(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    customer_id = unique("customer")
    held = await meeting(client, headers, customer_id)
    recorded = await expectation(client, headers, held["id"], capability="cannot_meet")
    confirmed = await client.post(f"/v1/expectations/{recorded['id']}/confirm", json=CONFIRMATION, headers=headers)

    records: list[Record] = await read_topic(
        platform.bootstrap_servers,
        platform.topic("expectations.events"),
        where=lambda r: r.key == customer_id.encode(),
        until=lambda found: len(found) >= 4,
    )
    # The SDK reads structured mode only when the content-type header says so.
    events = [
        from_kafka(KafkaMessage(headers=dict(r.headers), key=r.key, value=r.value), JSONFormat()) for r in records
    ]
    assert [e.get_type() for e in events] == [
        "meeting.recorded",
        "expectation.recorded",
        "expectation.gap_identified",
        "expectation.confirmed",
    ]
    assert all(dict(r.headers)["content-type"] == b"application/cloudevents+json" for r in records)
    for event in events:
        assert event.get_source() == "/customer-focus/expectations"
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("customerid") == customer_id
    assert [e.get_subject() for e in events] == [held["id"], *[recorded["id"]] * 3]
    assert len({e.get_id() for e in events}) == 4
    assert [e.get_data() for e in events] == [held, recorded, recorded, confirmed.json()]


async def test_gap_is_identified_when_a_revision_says_we_can_meet_it_only_partly(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    recorded = await customer_with_expectation(client, headers, capability="can_meet")
    revised = await client.post(
        f"/v1/expectations/{recorded['id']}/revise", json=expectation_body(capability="partial"), headers=headers
    )
    events = await events_of(
        platform, recorded["customer_id"], until=lambda found: "expectation.gap_identified" in types_of(found)
    )
    assert types_of(events) == [
        "meeting.recorded",
        "expectation.recorded",
        "expectation.recorded",
        "expectation.gap_identified",
    ]
    assert [e["data"]["version"] for e in events[1:]] == [1, 2, 2]
    assert events[-1]["data"] == revised.json()


async def test_concurrent_confirmations_emit_one_confirmed_event(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}"
    confirmations = await asyncio.gather(
        *(client.post(f"{url}/confirm", json=CONFIRMATION, headers=headers) for _ in range(5))
    )
    assert {r.status_code for r in confirmations} == {200}
    await client.post(f"{url}/revise", json=expectation_body(), headers=headers)
    events = await events_of(
        platform, recorded["customer_id"], until=lambda found: any(e["data"].get("version") == 2 for e in found)
    )
    assert types_of(events).count("expectation.confirmed") == 1


async def test_confirming_twice_emits_one_confirmed_event(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}"
    await client.post(f"{url}/confirm", json=CONFIRMATION, headers=headers)
    await client.post(f"{url}/confirm", json=CONFIRMATION, headers=headers)
    # The revision's event follows on the same partition, so once it is read every earlier event has been.
    await client.post(f"{url}/revise", json=expectation_body(), headers=headers)
    events = await events_of(
        platform, recorded["customer_id"], until=lambda found: any(e["data"].get("version") == 2 for e in found)
    )
    assert types_of(events) == [
        "meeting.recorded",
        "expectation.recorded",
        "expectation.confirmed",
        "expectation.recorded",
    ]


async def test_a_question_added_to_the_bank_is_a_question_created_event_keyed_by_its_id(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    saved = await question(client, headers, "What would a good first week with us look like?", topic=unique("topic"))

    [record] = await read_topic(
        platform.bootstrap_servers,
        platform.topic("expectations.events"),
        where=lambda r: r.key == saved["id"].encode(),
        until=lambda found: len(found) >= 1,
    )
    event = orjson.loads(record.value)
    # About no customer (contract §2, v1.1): key, subject and `customerid` are the question's id.
    assert event["type"] == "question.created"
    assert event["source"] == "/customer-focus/expectations"
    assert event["subject"] == event["customerid"] == saved["id"]
    assert event["data"] == saved
