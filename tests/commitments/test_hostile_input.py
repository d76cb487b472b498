"""Hostile date-times and cursors on the commitments service (contract §1, v1.1): a 422, then business as usual."""

from __future__ import annotations

import httpx
import pytest

from tests.commitments.support import commitment_body, create
from tests.support.hostile import EDGE_INSTANTS, FORGED_CURSORS, OUT_OF_RANGE_INSTANTS, assert_invalid
from tests.support.platform import Platform


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


async def test_due_at_that_is_no_instant_in_years_1_to_9999_is_422(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    promise = await create(client, writer)
    for due_at in OUT_OF_RANGE_INSTANTS:
        made = await client.post("/v1/commitments", json=commitment_body(due_at=due_at), headers=writer)
        assert_invalid(made, "due_at")
        moved = await client.post(
            f"/v1/commitments/{promise['id']}/reschedule", json={"due_at": due_at, "reason": "x"}, headers=writer
        )
        assert_invalid(moved, "due_at")

    assert (await client.get(f"/v1/commitments/{promise['id']}", headers=writer)).json()["due_at"] == promise["due_at"]
    await create(client, writer)


@pytest.mark.parametrize(
    ("path", "parameter"),
    [("/v1/commitments", "due_before"), ("/v1/commitments/metrics", "since"), ("/v1/commitments/metrics", "until")],
)
async def test_date_time_query_out_of_range_is_422(
    client: httpx.AsyncClient, writer: dict[str, str], path: str, parameter: str
) -> None:
    for instant in OUT_OF_RANGE_INSTANTS:
        assert_invalid(await client.get(path, params={parameter: instant}, headers=writer), parameter)
    for instant in EDGE_INSTANTS:
        assert (await client.get(path, params={parameter: instant}, headers=writer)).status_code == 200
    assert (await client.get(path, headers=writer)).status_code == 200


async def test_the_latest_due_date_is_a_promise_like_any_other(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    latest = EDGE_INSTANTS[1]
    promise = await create(client, writer, due_at=latest)
    assert promise["due_at"] == latest
    assert promise["status"] == "open"


async def test_forged_cursor_is_422(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    for cursor in FORGED_CURSORS:
        assert_invalid(await client.get("/v1/commitments", params={"cursor": cursor}, headers=writer), "cursor")
    assert (await client.get("/v1/commitments", headers=writer)).status_code == 200
