"""Making, reading, keeping, moving and cancelling promises over HTTP."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.commitments.support import at, commitment_body, create, in_seconds, unique
from tests.support.platform import Platform


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


async def test_created_commitment_is_open_and_readable(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    body = commitment_body(due_at=in_seconds(7200))
    response = await client.post("/v1/commitments", json=body, headers=writer)
    assert response.status_code == 201, response.text
    created = response.json()
    assert created["status"] == "open"
    assert created["customer_kind"] == "external"
    assert created["renegotiations"] == 0
    assert created["history"] == []
    assert created["source"] == body["source"]
    assert at(created["due_at"]) == at(body["due_at"])
    assert (at(created["due_at"]) - at(created["due_soon_at"])).total_seconds() == 1.0
    fetched = await client.get(f"/v1/commitments/{created['id']}", headers=writer)
    assert fetched.json() == created


async def test_due_date_is_returned_in_utc(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer, due_at="2099-06-01T12:00:00+02:00")
    assert created["due_at"] == "2099-06-01T10:00:00Z"


async def test_due_date_in_the_past_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(due_at=in_seconds(-60)), headers=writer)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["loc"] == ["body", "due_at"]


async def test_due_date_without_a_zone_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(due_at="2099-06-01T12:00:00"), headers=writer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "due_at"]


async def test_due_date_beyond_the_calendar_in_utc_is_rejected(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/commitments", json=commitment_body(due_at="9999-12-31T23:59:59-23:00"), headers=writer
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "due_at"]


async def test_title_with_a_nul_character_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(title="Call\x00back"), headers=writer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "title"]


async def test_unknown_department_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(department="legal"), headers=writer)
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["loc"] == ["body", "department"]
    assert problem["type"].endswith("unknown-department")


async def test_source_other_than_manual_needs_an_id(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(source={"type": "feedback"}), headers=writer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][:2] == ["body", "source"]


async def test_manual_commitment_needs_no_source(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    body = commitment_body()
    del body["source"]
    response = await client.post("/v1/commitments", json=body, headers=writer)
    assert response.status_code == 201, response.text
    assert response.json()["source"] == {"type": "manual", "id": None}


async def test_unknown_commitment_is_404(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.get(f"/v1/commitments/{uuid.uuid4()}", headers=writer)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_reading_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/commitments")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_creating_with_only_the_read_scope_is_403(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.post("/v1/commitments", json=commitment_body(), headers=platform.auth("commitments:read"))
    assert response.status_code == 403


async def test_same_idempotency_key_replays_the_first_creation(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    body = commitment_body()
    headers = {**writer, "Idempotency-Key": unique("key")}
    first = await client.post("/v1/commitments", json=body, headers=headers)
    again = await client.post("/v1/commitments", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = await client.get("/v1/commitments", params={"customer_id": body["customer_id"]}, headers=writer)
    assert len(listed.json()["items"]) == 1


async def test_idempotency_key_reused_with_another_body_is_422(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    headers = {**writer, "Idempotency-Key": unique("key")}
    assert (await client.post("/v1/commitments", json=commitment_body(), headers=headers)).status_code == 201
    reused = await client.post("/v1/commitments", json=commitment_body(), headers=headers)
    assert reused.status_code == 422


async def test_completing_before_the_due_date_is_met_on_time(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    response = await client.post(
        f"/v1/commitments/{created['id']}/complete", json={"note": "Quote sent."}, headers=writer
    )
    assert response.status_code == 200, response.text
    met = response.json()
    assert met["status"] == "met_on_time"
    assert met["completion_note"] == "Quote sent."
    assert at(met["completed_at"]) <= at(met["due_at"])


async def test_completing_needs_no_body(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    response = await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)
    assert response.status_code == 200, response.text
    assert response.json()["completion_note"] is None


async def test_completing_an_already_completed_commitment_is_409(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    created = await create(client, writer)
    assert (await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)).status_code == 200
    again = await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)
    assert again.status_code == 409
    assert again.json()["type"].endswith("commitment-closed")


async def test_completing_a_cancelled_commitment_is_409(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    cancelled = await client.post(
        f"/v1/commitments/{created['id']}/cancel", json={"reason": "Customer withdrew the request."}, headers=writer
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["cancellation_reason"] == "Customer withdrew the request."
    response = await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)
    assert response.status_code == 409


async def test_cancelling_a_completed_commitment_is_409(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)
    response = await client.post(f"/v1/commitments/{created['id']}/cancel", headers=writer)
    assert response.status_code == 409


async def test_rescheduling_keeps_the_earlier_due_date_and_counts_it(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    created = await create(client, writer, due_at=in_seconds(3600))
    first_move = in_seconds(7200)
    second_move = in_seconds(10_800)
    await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": first_move.isoformat(), "reason": "Supplier delay."},
        headers=writer,
    )
    response = await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": second_move.isoformat(), "reason": "Customer asked for more options."},
        headers=writer,
    )
    assert response.status_code == 200, response.text
    moved = response.json()
    assert moved["renegotiations"] == 2
    assert at(moved["due_at"]) == second_move
    assert at(moved["previous_due_at"]) == first_move
    assert [at(h["due_at"]) for h in moved["history"]] == [at(created["due_at"]), first_move]
    assert [h["reason"] for h in moved["history"]] == ["Supplier delay.", "Customer asked for more options."]


async def test_rescheduling_without_a_reason_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    response = await client.post(
        f"/v1/commitments/{created['id']}/reschedule", json={"due_at": in_seconds(7200).isoformat()}, headers=writer
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "reason"]


async def test_rescheduling_with_a_blank_reason_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    response = await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": in_seconds(7200).isoformat(), "reason": "   "},
        headers=writer,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "reason"]


async def test_rescheduling_into_the_past_is_rejected(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    response = await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": in_seconds(-5).isoformat(), "reason": "Typo."},
        headers=writer,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "due_at"]


async def test_rescheduling_a_cancelled_commitment_is_409(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    await client.post(f"/v1/commitments/{created['id']}/cancel", headers=writer)
    response = await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": in_seconds(7200).isoformat(), "reason": "Too late."},
        headers=writer,
    )
    assert response.status_code == 409


@pytest.fixture
async def portfolio(client: httpx.AsyncClient, writer: dict[str, str]) -> dict[str, Any]:
    """Four promises of one customer that differ in one listed field each."""
    customer = unique("customer")
    owner = unique("owner")
    feedback_id = str(uuid.uuid4())
    first = await create(client, writer, customer_id=customer)
    support = await create(client, writer, customer_id=customer, department="support")
    owned = await create(client, writer, customer_id=customer, owner_id=owner)
    soon = await create(client, writer, customer_id=customer, due_at=in_seconds(3600))
    answer = await create(client, writer, customer_id=customer, source={"type": "feedback", "id": feedback_id})
    await client.post(f"/v1/commitments/{first['id']}/cancel", headers=writer)
    return {
        "customer": customer,
        "owner": owner,
        "feedback_id": feedback_id,
        "first": first,
        "support": support,
        "owned": owned,
        "soon": soon,
        "answer": answer,
    }


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({}, ["answer", "soon", "owned", "support", "first"]),
        ({"department": "support"}, ["support"]),
        ({"owner_id": "{owner}"}, ["owned"]),
        ({"status": "cancelled"}, ["first"]),
        ({"due_before": "{in_two_hours}"}, ["soon"]),
        ({"source_type": "feedback"}, ["answer"]),
        ({"source_id": "{feedback_id}"}, ["answer"]),
    ],
)
async def test_list_filters_by_each_field(
    client: httpx.AsyncClient,
    writer: dict[str, str],
    portfolio: dict[str, Any],
    params: dict[str, str],
    expected: list[str],
) -> None:
    values = {
        "owner": portfolio["owner"],
        "feedback_id": portfolio["feedback_id"],
        "in_two_hours": in_seconds(7200).isoformat(),
    }
    query = {"customer_id": portfolio["customer"], **{k: v.format(**values) for k, v in params.items()}}
    response = await client.get("/v1/commitments", params=query, headers=writer)
    assert response.status_code == 200, response.text
    assert [item["id"] for item in response.json()["items"]] == [portfolio[name]["id"] for name in expected]


async def test_list_by_several_statuses_matches_any(
    client: httpx.AsyncClient, writer: dict[str, str], portfolio: dict[str, Any]
) -> None:
    response = await client.get(
        "/v1/commitments?status=cancelled&status=open", params={"customer_id": portfolio["customer"]}, headers=writer
    )
    assert len(response.json()["items"]) == 5


async def test_list_with_an_unknown_department_is_422(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.get("/v1/commitments", params={"department": "legal"}, headers=writer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "department"]


async def test_paging_returns_every_commitment_once(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    customer = unique("customer")
    made = [(await create(client, writer, customer_id=customer))["id"] for _ in range(7)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"customer_id": customer, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = (await client.get("/v1/commitments", params=params, headers=writer)).json()
        seen += [item["id"] for item in page["items"]]
        # One arriving mid-walk is newer than the cursor, so it must not appear.
        await create(client, writer, customer_id=customer)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(made))
