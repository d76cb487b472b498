"""POST/GET /v1/meetings: the two-person rule, prepared questions, paging."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.expectations.factories import meeting, meeting_body, question, staff, unique

TWO_PERSON_RULE = "two-person-rule"


@pytest.fixture
async def question_ids(client: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    return [(await question(client, headers, "What does a good delivery look like to you?"))["id"]]


async def test_meeting_with_one_staff_member_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    body = meeting_body(unique("customer"), question_ids, attendees=[staff("s-ana", "Ana Asks")])
    response = await client.post("/v1/meetings", json=body, headers=headers)
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith(TWO_PERSON_RULE)
    assert "only Ana Asks (s-ana) attended: a second staff member is missing" in problem["detail"]
    assert problem["errors"][0]["loc"] == ["body", "attendees"]


async def test_meeting_with_the_same_staff_member_twice_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    twice = [staff("s-ana", "Ana Asks"), staff("s-ana", "Ana Asks", "support")]
    response = await client.post(
        "/v1/meetings", json=meeting_body(unique("customer"), question_ids, attendees=twice), headers=headers
    )
    assert response.status_code == 422
    problem = response.json()
    assert problem["type"].endswith(TWO_PERSON_RULE)
    assert "lists Ana Asks (s-ana) 2 times: a second, different staff member is missing" in problem["detail"]


async def test_meeting_without_staff_members_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    response = await client.post(
        "/v1/meetings", json=meeting_body(unique("customer"), question_ids, attendees=[]), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith(TWO_PERSON_RULE)
    assert "both are missing" in response.json()["detail"]


async def test_meeting_with_two_distinct_staff_members_is_recorded(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    customer_id = unique("customer")
    held_at = datetime(2026, 3, 2, 10, 30, tzinfo=UTC)
    body = meeting_body(customer_id, question_ids, held_at="2026-03-02T12:30:00+02:00", customer_kind="internal")
    response = await client.post("/v1/meetings", json=body, headers=headers)
    assert response.status_code == 201, response.text
    recorded = response.json()
    assert recorded["customer_id"] == customer_id
    assert recorded["customer_kind"] == "internal"
    assert datetime.fromisoformat(recorded["held_at"]) == held_at
    assert recorded["held_at"].endswith("Z")
    assert [a["staff_id"] for a in recorded["attendees"]] == ["s-ana", "s-leo"]
    assert recorded["question_ids"] == question_ids
    fetched = await client.get(f"/v1/meetings/{recorded['id']}", headers=headers)
    assert fetched.json() == recorded


async def test_meeting_with_unknown_question_id_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    unknown = str(uuid.uuid4())
    body = meeting_body(unique("customer"), [*question_ids, unknown])
    response = await client.post("/v1/meetings", json=body, headers=headers)
    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"loc": ["body", "question_ids", 1], "msg": f"no question has the id {unknown}"}
    ]


async def test_meeting_with_unknown_department_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    attendees = [staff("s-ana", "Ana Asks"), staff("s-leo", "Leo Listens", "marketing")]
    response = await client.post(
        "/v1/meetings", json=meeting_body(unique("customer"), question_ids, attendees=attendees), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "attendees", 1, "department"]


async def test_meeting_held_in_the_future_is_rejected(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    response = await client.post(
        "/v1/meetings", json=meeting_body(unique("customer"), question_ids, held_at=tomorrow), headers=headers
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "held_at"]


MALFORMED: list[tuple[str, dict[str, Any], list[str | int]]] = [
    ("customer_id missing", {"customer_id": None}, ["body", "customer_id"]),
    ("customer_id too long", {"customer_id": "c" * 129}, ["body", "customer_id"]),
    ("unknown customer_kind", {"customer_kind": "partner"}, ["body", "customer_kind"]),
    ("held_at without a zone", {"held_at": "2026-03-02T10:30:00"}, ["body", "held_at"]),
    ("held_at before year 1 in UTC", {"held_at": "0001-01-01T00:00:00+02:00"}, ["body", "held_at"]),
    ("attendee without staff_id", {"attendees": [{"name": "Ana", "department": "sales"}]}, ["body", "attendees", 0]),
    ("no customer participant", {"customer_participants": []}, ["body", "customer_participants"]),
    ("no prepared question", {"question_ids": []}, ["body", "question_ids"]),
    ("question id not a uuid", {"question_ids": ["not-a-uuid"]}, ["body", "question_ids", 0]),
    ("unknown field", {"agenda": "x"}, ["body", "agenda"]),
]


@pytest.mark.parametrize(("case", "change", "loc"), MALFORMED, ids=[m[0] for m in MALFORMED])
async def test_malformed_meeting_is_rejected_naming_the_field(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    question_ids: list[str],
    case: str,
    change: dict[str, Any],
    loc: list[str | int],
) -> None:
    body = {k: v for k, v in {**meeting_body(unique("customer"), question_ids), **change}.items() if v is not None}
    response = await client.post("/v1/meetings", json=body, headers=headers)
    assert response.status_code == 422, case
    assert response.headers["content-type"] == "application/problem+json"
    locs = [error["loc"] for error in response.json()["errors"]]
    assert any(found[: len(loc)] == loc for found in locs), locs


async def test_meeting_body_that_is_not_json_is_rejected(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post(
        "/v1/meetings", content=b"{not json", headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("malformed-json")


async def test_meeting_body_that_is_not_utf8_is_rejected(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.post(
        "/v1/meetings", content=b'{"notes": "\xff"}', headers={**headers, "content-type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["type"].endswith("malformed-json")
    assert response.json()["errors"][0]["loc"] == ["body"]


async def test_unknown_meeting_is_not_found(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    response = await client.get(f"/v1/meetings/{uuid.uuid4()}", headers=headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_meetings_are_listed_per_customer_in_pages(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    customer_id = unique("customer")
    recorded = [await meeting(client, headers, customer_id) for _ in range(3)]
    await meeting(client, headers, unique("someone-else"))
    first = (await client.get("/v1/meetings", params={"customer_id": customer_id, "limit": 2}, headers=headers)).json()
    rest = (
        await client.get(
            "/v1/meetings", params={"customer_id": customer_id, "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    assert [m["id"] for m in first["items"] + rest["items"]] == [m["id"] for m in reversed(recorded)]
    assert rest["next_cursor"] is None


async def test_same_idempotency_key_records_the_meeting_once(
    client: httpx.AsyncClient, headers: dict[str, str], question_ids: list[str]
) -> None:
    customer_id = unique("customer")
    keyed = {**headers, "Idempotency-Key": unique("key")}
    body = meeting_body(customer_id, question_ids)
    first = await client.post("/v1/meetings", json=body, headers=keyed)
    again = await client.post("/v1/meetings", json=body, headers=keyed)
    other = await client.post("/v1/meetings", json={**body, "notes": "Another meeting."}, headers=keyed)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert other.status_code == 422
    listed = (await client.get("/v1/meetings", params={"customer_id": customer_id}, headers=headers)).json()
    assert len(listed["items"]) == 1
