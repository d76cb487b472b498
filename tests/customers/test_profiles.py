"""Profiles: create or replace, validated field by field, behind the customers scopes; `customer.updated`."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from shared import catalogue
from tests.customers.support import customers_in_segment, timeline_with
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.kafka import read_topic
from tests.support.platform import Platform

PROFILE: dict[str, Any] = {
    "name": "Acme Logistics",
    "customer_kind": "external",
    "key_customer": True,
    "segment": "enterprise",
    "lifetime_value": {"amount": "125000.50", "currency": "EUR"},
    "contacts": [{"staff_id": "s-1", "name": "Ann", "department": "sales"}],
    "awareness": {
        "knows_we_exist": True,
        "knows_our_capabilities": False,
        "knows_who_to_contact": None,
        "checked_at": "2026-11-30T09:00:00+01:00",
    },
}


async def test_a_profile_is_created_then_replaced(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    customer_id = customer()

    created = await client.put(f"/v1/customers/{customer_id}", json=PROFILE, headers=writer)
    assert created.status_code == 201, created.text
    body = created.json()
    assert {key: body[key] for key in PROFILE} == {
        **PROFILE,
        "awareness": {**PROFILE["awareness"], "checked_at": "2026-11-30T08:00:00Z"},
    }
    assert body["profiled"] is True
    assert body["supplying_department"] is None
    assert body["counts"]["feedback"] == 0
    assert (await client.get(f"/v1/customers/{customer_id}", headers=writer)).json() == body

    internal = {"name": "Production planning", "customer_kind": "internal", "supplying_department": "production"}
    replaced = await client.put(f"/v1/customers/{customer_id}", json=internal, headers=writer)
    assert replaced.status_code == 200
    after = replaced.json()
    assert after["customer_kind"] == "internal"
    assert after["supplying_department"] == "production"
    # Replaced, not merged: what the second body left out is back to its default.
    assert (after["key_customer"], after["segment"], after["lifetime_value"], after["contacts"]) == (
        False,
        None,
        None,
        [],
    )
    assert after["awareness"] == {
        "knows_we_exist": None,
        "knows_our_capabilities": None,
        "knows_who_to_contact": None,
        "checked_at": None,
    }
    assert after["created_at"] == body["created_at"]


async def test_a_customer_known_from_events_gets_its_profile_and_keeps_its_story(
    client: httpx.AsyncClient, publisher: EventPublisher, writer: dict[str, str]
) -> None:
    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    await timeline_with(client, writer, customer_id, record.event_id)

    response = await client.put(f"/v1/customers/{customer_id}", json=PROFILE, headers=writer)

    assert response.status_code == 200
    assert response.json()["counts"]["open_complaints"] == 1
    assert response.json()["last_contact_at"] == "2026-11-22T10:00:00Z"


async def test_customer_updated_is_emitted_once_per_change(
    client: httpx.AsyncClient, platform: Platform, writer: dict[str, str]
) -> None:
    customer_id = customer()
    url = f"/v1/customers/{customer_id}"
    assert (await client.put(url, json=PROFILE, headers=writer)).status_code == 201
    assert (await client.put(url, json=PROFILE, headers=writer)).status_code == 200  # the same: no change
    changed = await client.put(url, json={**PROFILE, "segment": "mid-market"}, headers=writer)
    assert changed.status_code == 200

    # The change is the marker: the relay publishes in order, so a second event for the repeat would come before it.
    def marker_seen(found: list[Any]) -> bool:
        return any(json.loads(r.value)["data"]["segment"] == "mid-market" for r in found)

    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic(catalogue.CUSTOMER_UPDATED.topic),
        where=lambda r: r.key == customer_id.encode(),
        until=marker_seen,
    )

    events = [json.loads(r.value) for r in records]
    assert [(e["type"], e["subject"], e["customerid"]) for e in events] == [
        ("customer.updated", customer_id, customer_id)
    ] * 2
    assert [e["data"]["segment"] for e in events] == ["enterprise", "mid-market"]
    assert events[1]["data"] == changed.json()


@pytest.mark.parametrize(
    ("change", "loc"),
    [
        ({"name": "Acme\x00"}, ["body", "name"]),
        ({"name": ""}, ["body", "name"]),
        ({"customer_kind": "partner"}, ["body", "customer_kind"]),
        ({"lifetime_value": {"amount": "-1", "currency": "EUR"}}, ["body", "lifetime_value", "amount"]),
        ({"lifetime_value": {"amount": "NaN", "currency": "EUR"}}, ["body", "lifetime_value", "amount"]),
        ({"lifetime_value": {"amount": "10", "currency": "eur"}}, ["body", "lifetime_value", "currency"]),
        (
            {"contacts": [{"staff_id": "s-1", "name": "Ann", "department": "legal"}]},
            ["body", "contacts", 0, "department"],
        ),
        ({"supplying_department": "production"}, ["body", "supplying_department"]),
        ({"customer_kind": "internal", "supplying_department": "legal"}, ["body", "supplying_department"]),
        ({"awareness": {"checked_at": "2026-11-30T09:00:00"}}, ["body", "awareness", "checked_at"]),
        ({"awareness": {"knows_we_exist": "maybe"}}, ["body", "awareness", "knows_we_exist"]),
        ({"nmae": "typo"}, ["body", "nmae"]),
    ],
    ids=lambda value: json.dumps(value) if isinstance(value, dict) else None,
)
async def test_an_invalid_profile_is_a_422_naming_the_field(
    client: httpx.AsyncClient, writer: dict[str, str], change: dict[str, Any], loc: list[Any]
) -> None:
    customer_id = customer()

    response = await client.put(f"/v1/customers/{customer_id}", json={**PROFILE, **change}, headers=writer)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert loc in [error["loc"] for error in response.json()["errors"]]
    assert (await client.get(f"/v1/customers/{customer_id}", headers=writer)).status_code == 404


async def test_a_customer_id_over_128_characters_is_a_422(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.put(f"/v1/customers/{'c' * 129}", json=PROFILE, headers=writer)

    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "customer_id"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/v1/customers/{id}"),
        ("GET", "/v1/customers/{id}"),
        ("GET", "/v1/customers"),
        ("GET", "/v1/customers/{id}/timeline"),
    ],
)
async def test_without_a_valid_token_it_is_a_401(client: httpx.AsyncClient, method: str, path: str) -> None:
    url = path.format(id=customer())
    body = PROFILE if method == "PUT" else None

    missing = await client.request(method, url, json=body)
    forged = await client.request(method, url, json=body, headers={"Authorization": "Bearer not.a.token"})

    for response in (missing, forged):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("method", "path", "scopes"),
    [
        ("PUT", "/v1/customers/{id}", ("customers:read",)),
        ("GET", "/v1/customers/{id}", ("customers:write",)),
        ("GET", "/v1/customers", ("feedback:read",)),
        ("GET", "/v1/customers/{id}/timeline", ("commitments:read",)),
    ],
)
async def test_a_token_without_the_scope_is_a_403(
    client: httpx.AsyncClient, platform: Platform, method: str, path: str, scopes: tuple[str, ...]
) -> None:
    body = PROFILE if method == "PUT" else None
    response = await client.request(method, path.format(id=customer()), json=body, headers=platform.auth(*scopes))

    assert response.status_code == 403


async def test_the_list_filters_key_and_internal_customers_and_pages(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    segment = customer()  # this test's customers, among every other test's
    internal = {"customer_kind": "internal", "supplying_department": "production", "key_customer": True}
    made = []
    for profile in ({"key_customer": True}, {}, internal, {"key_customer": True}):
        customer_id = customer()
        await client.put(f"/v1/customers/{customer_id}", json={**profile, "segment": segment}, headers=writer)
        made.append(customer_id)

    def listed(**params: Any) -> Any:
        return customers_in_segment(client, writer, segment, **params)

    assert await listed() == made[::-1]
    assert await listed(key_customer="true") == [made[3], made[2], made[0]]
    assert await listed(key_customer="false") == [made[1]]
    assert await listed(customer_kind="internal") == [made[2]]
    assert await listed(customer_kind="internal", key_customer="false") == []

    first = await client.get("/v1/customers", params={"limit": 1}, headers=writer)
    assert len(first.json()["items"]) == 1
    assert first.json()["next_cursor"] is not None
    assert (await client.get("/v1/customers", params={"customer_kind": "partner"}, headers=writer)).status_code == 422
