"""Hostile date-times and cursors on the expectations service (contract §1, v1.1): a 422, then business as usual."""

from __future__ import annotations

import httpx
import pytest

from tests.expectations.factories import meeting, meeting_body, question, unique
from tests.support.hostile import EDGE_INSTANTS, FORGED_CURSORS, OUT_OF_RANGE_INSTANTS, assert_invalid


async def test_held_at_that_is_no_instant_in_years_1_to_9999_is_422(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer = unique("customer")
    question_ids = [(await question(client, headers))["id"]]
    for held_at in OUT_OF_RANGE_INSTANTS:
        body = meeting_body(customer, question_ids, held_at=held_at)
        assert_invalid(await client.post("/v1/meetings", json=body, headers=headers), "held_at")

    oldest = await meeting(client, headers, customer, question_ids=question_ids, held_at=EDGE_INSTANTS[0])
    assert oldest["held_at"] == EDGE_INSTANTS[0]
    await meeting(client, headers, customer, question_ids=question_ids)
    listed = await client.get("/v1/meetings", params={"customer_id": customer}, headers=headers)
    assert len(listed.json()["items"]) == 2


@pytest.mark.parametrize("path", ["/v1/questions", "/v1/meetings", "/v1/expectations"])
async def test_forged_cursor_is_422(client: httpx.AsyncClient, headers: dict[str, str], path: str) -> None:
    for cursor in FORGED_CURSORS:
        assert_invalid(await client.get(path, params={"cursor": cursor}, headers=headers), "cursor")
    assert (await client.get(path, headers=headers)).status_code == 200
