"""Small factories that make test data through the API, as a client would."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx


def unique(prefix: str) -> str:
    """An id no other test uses, so tests stay independent on the shared database."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def staff(staff_id: str, name: str, department: str = "sales") -> dict[str, str]:
    return {"staff_id": staff_id, "name": name, "department": department}


async def question(
    client: httpx.AsyncClient, headers: dict[str, str], text: str = "What do you expect from us?", **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/v1/questions", json={"text": text, "topic": "expectations", **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def meeting_body(customer_id: str, question_ids: list[str], **fields: Any) -> dict[str, Any]:
    return {
        "customer_id": customer_id,
        "held_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "attendees": [staff("s-ana", "Ana Asks"), staff("s-leo", "Leo Listens", "production")],
        "customer_participants": [{"name": "Chris Customer", "role": "operations lead"}],
        "question_ids": question_ids,
        "notes": "Quarterly review.",
        **fields,
    }


async def meeting(
    client: httpx.AsyncClient, headers: dict[str, str], customer_id: str, **fields: Any
) -> dict[str, Any]:
    if "question_ids" not in fields:
        fields["question_ids"] = [(await question(client, headers))["id"]]
    response = await client.post("/v1/meetings", json=meeting_body(customer_id, **fields), headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def expectation_body(**fields: Any) -> dict[str, Any]:
    return {
        "statement": "We need the parts on site before the line starts on Monday.",
        "restatement": "Deliveries arrive by Friday 17:00 for the next week's production.",
        "priority": "high",
        "key_point": True,
        "measure": "delivered by Friday 17:00, every week",
        "capability": "can_meet",
        **fields,
    }


async def expectation(
    client: httpx.AsyncClient, headers: dict[str, str], meeting_id: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/v1/meetings/{meeting_id}/expectations", json=expectation_body(**fields), headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def customer_with_expectation(
    client: httpx.AsyncClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """A new customer, a meeting with them and one expectation heard in it."""
    recorded = await meeting(client, headers, unique("customer"))
    return await expectation(client, headers, recorded["id"], **fields)
