"""Hostile input on the customers service (contract §1, v1.1): a 422, or an event that changes nothing; then
business as usual."""

from __future__ import annotations

import uuid

import httpx
import orjson
import pytest

from shared import catalogue
from shared.events import OutboxRecord
from tests.customers.support import timeline_with
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.hostile import FORGED_CURSORS, OUT_OF_RANGE_INSTANTS, assert_invalid, forged_cursor


async def test_checked_at_that_is_no_instant_in_years_1_to_9999_is_422(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    customer_id = customer()
    for checked_at in OUT_OF_RANGE_INSTANTS:
        body = {"awareness": {"checked_at": checked_at}}
        assert_invalid(await client.put(f"/v1/customers/{customer_id}", json=body, headers=writer), "checked_at")

    assert (await client.put(f"/v1/customers/{customer_id}", json={}, headers=writer)).status_code == 201


@pytest.mark.parametrize("path", ["/v1/customers", "/v1/customers/{id}/timeline"])
async def test_forged_cursor_is_422(client: httpx.AsyncClient, writer: dict[str, str], path: str) -> None:
    customer_id = customer()
    await client.put(f"/v1/customers/{customer_id}", json={}, headers=writer)
    url = path.format(id=customer_id)
    # For the timeline, whose entry ids are numbers: ids no `bigint` holds, and no number at all.
    too_large, negative = (forged_cursor("2026-01-01T00:00:00Z", item_id) for item_id in (str(2**63), "-1"))
    for cursor in (*FORGED_CURSORS, too_large, negative):
        assert_invalid(await client.get(url, params={"cursor": cursor}, headers=writer), "cursor")
    assert (await client.get(url, headers=writer)).status_code == 200


async def test_an_event_with_strange_data_makes_a_plain_entry_and_the_timeline_goes_on(
    client: httpx.AsyncClient, publisher: EventPublisher, reader: dict[str, str]
) -> None:
    customer_id, event_id = customer(), str(uuid.uuid4())
    envelope: dict[str, object] = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/customer-focus/feedback",
        "type": "feedback.received",
        "subject": "no-such-feedback\x00",
        "time": "0001-01-01T00:00:00+23:59",
        "customerid": customer_id,
        "data": {
            "id": 42,
            "kind": ["complaint"],
            "text": "nul\x00 and\nnewline",
            "rating": "ten",
            "occurred_at": "soon",
        },
    }
    value = orjson.dumps(envelope)
    odd = OutboxRecord(uuid.UUID(event_id), "feedback.events", customer_id, "feedback.received", value)
    await publisher.send(odd)
    marker = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)

    items = await timeline_with(client, reader, customer_id, marker.event_id)

    # Its time is no instant: the entry takes the moment it was read instead.
    assert {item["event_id"] for item in items} == {str(marker.event_id), event_id}
    strange = next(item for item in items if item["event_id"] == event_id)
    assert strange["subject"] == "no-such-feedback"
    assert "\n" not in strange["summary"]
