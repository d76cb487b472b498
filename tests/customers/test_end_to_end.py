"""A customer's story told by the real services reaches its timeline, with its lineage and counts."""

from __future__ import annotations

from typing import Any

import httpx

from services.commitments import config as commitments_config
from services.commitments.app import create_app as create_commitments_app
from services.expectations import config as expectations_config
from services.expectations.app import create_app as create_expectations_app
from services.feedback import config as feedback_config
from services.feedback.app import create_app as create_feedback_app
from tests.commitments.support import create as create_commitment
from tests.commitments.support import in_seconds
from tests.expectations.factories import expectation, meeting, question, unique
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


async def test_feedback_a_meeting_and_a_promise_make_one_timeline(
    platform: Platform, client: httpx.AsyncClient, reader: dict[str, str]
) -> None:
    customer_id, headers = unique("customer"), platform.auth()
    feedback_settings = platform.settings("feedback")
    expectations_settings = platform.settings("expectations")
    # No response promises here: their consumer group belongs to the commitments tests.
    commitments_settings = platform.settings("commitments", commitments_response_promises=False)
    assert isinstance(feedback_settings, feedback_config.Settings)
    assert isinstance(expectations_settings, expectations_config.Settings)
    assert isinstance(commitments_settings, commitments_config.Settings)
    async with (
        serve(create_feedback_app(feedback_settings)) as feedback,
        serve(create_expectations_app(expectations_settings)) as expectations,
        serve(create_commitments_app(commitments_settings)) as commitments,
    ):
        body = {"customer_id": customer_id, "channel": "phone", "kind": "complaint", "text": "The order came late."}
        complaint = (await feedback.post("/v1/feedback", json=body, headers=headers)).json()
        prepared = await question(expectations, headers)
        met = await meeting(expectations, headers, customer_id, question_ids=[prepared["id"]])
        heard = await expectation(expectations, headers, met["id"], capability="partial", question_id=prepared["id"])
        source = {"type": "feedback", "id": complaint["id"]}
        # Due in a week: beyond the due-soon lead (a day), so no `commitment.due_soon` comes meanwhile.
        promise = await create_commitment(
            commitments, headers, customer_id=customer_id, source=source, due_at=in_seconds(7 * 86_400)
        )

        async def all_five() -> list[dict[str, Any]] | None:
            page = await client.get(f"/v1/customers/{customer_id}/timeline", headers=reader)
            items: list[dict[str, Any]] = page.json()["items"] if page.status_code == 200 else []
            return items if len(items) == 5 else None

        items = await eventually(all_five)

    by_type = {item["type"]: item for item in items}
    assert set(by_type) == {
        "feedback.received",
        "meeting.recorded",
        "expectation.recorded",
        "expectation.gap_identified",
        "commitment.created",
    }
    assert [item["time"] for item in items] == sorted((item["time"] for item in items), reverse=True)
    assert by_type["commitment.created"]["subject"] == promise["id"]
    assert by_type["commitment.created"]["links"] == [{"rel": "source", "type": "feedback", "id": complaint["id"]}]
    assert by_type["expectation.recorded"]["links"] == [
        {"rel": "meeting", "type": "meeting", "id": met["id"]},
        {"rel": "question", "type": "question", "id": prepared["id"]},
    ]
    assert by_type["expectation.gap_identified"]["subject"] == heard["id"]
    assert by_type["feedback.received"]["summary"] == "Complaint by phone: “The order came late.”"

    profile = (await client.get(f"/v1/customers/{customer_id}", headers=reader)).json()
    assert profile["counts"] == {
        "feedback": 1,
        "open_complaints": 1,
        "open_promises": 1,
        "broken_promises": 0,
        "unconfirmed_expectations": 1,
        "capability_gaps": 1,
    }
    assert profile["last_contact_at"] == complaint["occurred_at"].replace("+00:00", "Z")
