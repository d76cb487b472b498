"""Expectations: recorded under a meeting, confirmed, revised with history, listed, viewed per customer."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest

from tests.expectations.factories import (
    customer_with_expectation,
    expectation,
    expectation_body,
    meeting,
    question,
    unique,
)
from tests.support.platform import Platform

CONFIRMATION = {"confirmed_by": "Chris Customer", "note": "Read back at the end of the meeting."}


async def test_expectation_is_recorded_under_a_meeting_in_the_customers_words(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    asked = await question(client, headers, "What has to be true for a delivery to count as on time?")
    held = await meeting(client, headers, customer_id, question_ids=[asked["id"]], customer_kind="internal")
    recorded = await expectation(client, headers, held["id"], question_id=asked["id"])
    body = expectation_body(question_id=asked["id"])
    assert {k: recorded[k] for k in body} == body
    assert recorded["meeting_id"] == held["id"]
    assert recorded["customer_id"] == customer_id
    assert recorded["customer_kind"] == "internal"
    assert (recorded["status"], recorded["version"]) == ("recorded", 1)
    assert recorded["confirmation"] is None
    assert recorded["history"] == []


async def test_record_confirm_revise_keeps_every_version_in_history(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    recorded = await customer_with_expectation(client, headers)
    expectation_id = recorded["id"]

    confirmed = await client.post(f"/v1/expectations/{expectation_id}/confirm", json=CONFIRMATION, headers=headers)
    assert confirmed.status_code == 200, confirmed.text
    assert confirmed.json()["status"] == "confirmed"
    assert confirmed.json()["confirmation"]["confirmed_by"] == "Chris Customer"

    revision = expectation_body(restatement="Deliveries arrive by Thursday 17:00.", priority="medium")
    revised = await client.post(f"/v1/expectations/{expectation_id}/revise", json=revision, headers=headers)
    assert revised.status_code == 200, revised.text
    current = revised.json()
    assert (current["version"], current["status"], current["confirmation"]) == (2, "recorded", None)
    assert (current["restatement"], current["priority"]) == ("Deliveries arrive by Thursday 17:00.", "medium")
    [first] = current["history"]
    assert (first["version"], first["status"]) == (1, "confirmed")
    assert first["restatement"] == recorded["restatement"]
    assert first["confirmation"] == confirmed.json()["confirmation"]

    again = await client.post(f"/v1/expectations/{expectation_id}/revise", json=expectation_body(), headers=headers)
    assert [v["version"] for v in again.json()["history"]] == [1, 2]
    assert again.json()["history"][1]["status"] == "recorded"
    fetched = await client.get(f"/v1/expectations/{expectation_id}", headers=headers)
    assert fetched.json() == again.json()


async def test_revision_needs_confirming_again(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}"
    await client.post(f"{url}/confirm", json=CONFIRMATION, headers=headers)
    await client.post(f"{url}/revise", json=expectation_body(measure="within 24 hours"), headers=headers)
    reconfirmed = await client.post(f"{url}/confirm", json={**CONFIRMATION, "version": 2}, headers=headers)
    assert reconfirmed.status_code == 200
    assert (reconfirmed.json()["status"], reconfirmed.json()["version"]) == ("confirmed", 2)


async def test_concurrent_revisions_each_become_a_version(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}/revise"
    revisions = [expectation_body(measure=f"within {days} days") for days in range(1, 6)]
    responses = await asyncio.gather(*(client.post(url, json=body, headers=headers) for body in revisions))
    assert sorted(r.json()["version"] for r in responses) == [2, 3, 4, 5, 6]
    current = (await client.get(f"/v1/expectations/{recorded['id']}", headers=headers)).json()
    assert [v["version"] for v in current["history"]] == [1, 2, 3, 4, 5]
    heard = [v["measure"] for v in current["history"][1:]] + [current["measure"]]
    assert sorted(heard) == sorted(body["measure"] for body in revisions)


async def test_confirming_a_confirmed_version_again_changes_nothing(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}/confirm"
    first = await client.post(url, json=CONFIRMATION, headers=headers)
    again = await client.post(url, json={"confirmed_by": "Someone Else"}, headers=headers)
    assert again.status_code == 200
    assert again.json() == first.json()


async def test_confirming_a_superseded_version_is_a_conflict(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    recorded = await customer_with_expectation(client, headers)
    url = f"/v1/expectations/{recorded['id']}"
    await client.post(f"{url}/revise", json=expectation_body(), headers=headers)
    response = await client.post(f"{url}/confirm", json={**CONFIRMATION, "version": 1}, headers=headers)
    assert response.status_code == 409
    assert response.json()["type"].endswith("expectation-revised")
    assert response.json()["current_version"] == 2


async def test_expectation_under_unknown_meeting_is_not_found(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post(f"/v1/meetings/{uuid.uuid4()}/expectations", json=expectation_body(), headers=headers)
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "", None),
        ("POST", "/confirm", CONFIRMATION),
        ("POST", "/revise", expectation_body()),
    ],
    ids=["get", "confirm", "revise"],
)
async def test_unknown_expectation_is_not_found(
    client: httpx.AsyncClient, headers: dict[str, str], method: str, path: str, body: dict[str, Any] | None
) -> None:
    response = await client.request(method, f"/v1/expectations/{uuid.uuid4()}{path}", json=body, headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_expectation_drawn_by_a_question_not_prepared_for_the_meeting_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    held = await meeting(client, headers, unique("customer"))
    elsewhere = await question(client, headers, "What would you change?")
    response = await client.post(
        f"/v1/meetings/{held['id']}/expectations", json=expectation_body(question_id=elsewhere["id"]), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "question_id"]


MALFORMED: list[tuple[str, dict[str, Any], list[str]]] = [
    ("statement missing", {"statement": None}, ["body", "statement"]),
    ("restatement blank", {"restatement": "  "}, ["body", "restatement"]),
    ("unknown priority", {"priority": "urgent"}, ["body", "priority"]),
    ("key_point not a bool", {"key_point": "very"}, ["body", "key_point"]),
    ("unknown capability", {"capability": "maybe"}, ["body", "capability"]),
    ("question_id not a uuid", {"question_id": "q1"}, ["body", "question_id"]),
    ("misspelt field", {"mesure": "x"}, ["body", "mesure"]),
    ("statement with a NUL character", {"statement": "on time\x00"}, ["body", "statement"]),
]


@pytest.mark.parametrize(("case", "change", "loc"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_expectation_is_rejected_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], case: str, change: dict[str, Any], loc: list[str]
) -> None:
    held = await meeting(client, headers, unique("customer"))
    body = {k: v for k, v in {**expectation_body(), **change}.items() if v is not None}
    response = await client.post(f"/v1/meetings/{held['id']}/expectations", json=body, headers=headers)
    assert response.status_code == 422, case
    assert loc in [error["loc"] for error in response.json()["errors"]]


async def test_confirmation_without_confirmed_by_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    recorded = await customer_with_expectation(client, headers)
    response = await client.post(f"/v1/expectations/{recorded['id']}/confirm", json={"note": "ok"}, headers=headers)
    assert response.status_code == 422
    assert ["body", "confirmed_by"] in [error["loc"] for error in response.json()["errors"]]


async def test_expectations_are_listed_by_customer_status_and_capability(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    held = await meeting(client, headers, customer_id)
    met = await expectation(client, headers, held["id"], capability="can_meet")
    gap = await expectation(client, headers, held["id"], capability="cannot_meet")
    await client.post(f"/v1/expectations/{met['id']}/confirm", json=CONFIRMATION, headers=headers)

    async def listed(**params: str) -> list[str]:
        page = await client.get("/v1/expectations", params={"customer_id": customer_id, **params}, headers=headers)
        assert page.status_code == 200, page.text
        return [item["id"] for item in page.json()["items"]]

    assert await listed() == [gap["id"], met["id"]]
    assert await listed(status="confirmed") == [met["id"]]
    assert await listed(status="recorded", capability="cannot_meet") == [gap["id"]]
    assert await listed(capability="partial") == []
    assert await listed(meeting_id=held["id"], limit="1") == [gap["id"]]


async def test_unknown_status_filter_is_rejected(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get("/v1/expectations", params={"status": "pending"}, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "status"]


async def test_customer_view_puts_key_points_first_and_names_unconfirmed_and_unmet(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    held = await meeting(client, headers, customer_id)
    low = await expectation(client, headers, held["id"], key_point=False, priority="low", capability="cannot_meet")
    high = await expectation(client, headers, held["id"], key_point=False, priority="high", capability="partial")
    key = await expectation(client, headers, held["id"], key_point=True, priority="medium")
    await client.post(f"/v1/expectations/{key['id']}/confirm", json=CONFIRMATION, headers=headers)
    await client.post(f"/v1/expectations/{high['id']}/revise", json=expectation_body(key_point=False), headers=headers)

    view = (await client.get(f"/v1/customers/{customer_id}/expectations", headers=headers)).json()
    assert view["customer_id"] == customer_id
    assert [e["id"] for e in view["expectations"]] == [key["id"], high["id"], low["id"]]
    assert [e["version"] for e in view["expectations"]] == [1, 2, 1]
    assert view["unconfirmed_ids"] == [high["id"], low["id"]]
    assert view["cannot_meet_ids"] == [low["id"]]
    assert view["partial_ids"] == []


async def test_customer_without_expectations_has_an_empty_view(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    view = await client.get(f"/v1/customers/{customer_id}/expectations", headers=headers)
    assert view.status_code == 200
    assert view.json() == {
        "customer_id": customer_id,
        "expectations": [],
        "unconfirmed_ids": [],
        "cannot_meet_ids": [],
        "partial_ids": [],
    }


async def test_same_idempotency_key_records_the_expectation_once(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    held = await meeting(client, headers, customer_id)
    keyed = {**headers, "Idempotency-Key": unique("key")}
    url = f"/v1/meetings/{held['id']}/expectations"
    first = await client.post(url, json=expectation_body(), headers=keyed)
    again = await client.post(url, json=expectation_body(), headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = (await client.get("/v1/expectations", params={"customer_id": customer_id}, headers=headers)).json()
    assert [e["id"] for e in listed["items"]] == [first.json()["id"]]


async def test_expectation_id_that_is_not_a_uuid_is_rejected_naming_it(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.get("/v1/expectations/not-a-uuid", headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "expectation_id"]


async def test_same_idempotency_key_revises_once(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    recorded = await customer_with_expectation(client, headers)
    keyed = {**headers, "Idempotency-Key": unique("key")}
    url = f"/v1/expectations/{recorded['id']}/revise"
    first = await client.post(url, json=expectation_body(priority="low"), headers=keyed)
    again = await client.post(url, json=expectation_body(priority="low"), headers=keyed)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (await client.get(f"/v1/expectations/{recorded['id']}", headers=headers)).json()["version"] == 2


async def test_reading_expectations_needs_the_read_scope(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.get("/v1/expectations", headers=platform.auth("expectations:write"))
    assert response.status_code == 403
