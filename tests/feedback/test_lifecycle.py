"""Closing the loop (PATCH /v1/feedback/{id}): the lifecycle and its history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.feedback.conftest import capture, complaint, new_customer
from tests.support.platform import Platform


async def _move(
    client: httpx.AsyncClient,
    platform: Platform,
    feedback_id: str,
    status: str,
    note: str | None = None,
    sub: str = "agent-1",
) -> httpx.Response:
    headers = platform.auth("feedback:write", sub=sub)
    return await client.patch(f"/v1/feedback/{feedback_id}", json={"status": status, "note": note}, headers=headers)


async def _walk(client: httpx.AsyncClient, platform: Platform, feedback_id: str, *statuses: str) -> dict[str, Any]:
    moved: dict[str, Any] = {}
    for status in statuses:
        response = await _move(client, platform, feedback_id, status)
        assert response.status_code == 200, response.text
        moved = response.json()
    return moved


async def test_feedback_moves_through_its_lifecycle_and_every_move_is_recorded(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    feedback_id = created["id"]
    steps = [
        ("acknowledged", "Sorry, looking into it", "agent-1"),
        ("in_progress", None, "agent-2"),
        ("resolved", "Replacement sent", "agent-2"),
        ("closed", "Customer confirmed", "lead-7"),
    ]
    started = datetime.now(UTC) - timedelta(seconds=5)
    for status, note, sub in steps:
        response = await _move(client, platform, feedback_id, status, note, sub)
        assert response.status_code == 200, response.text
        assert response.json()["status"] == status

    fetched = (await client.get(f"/v1/feedback/{feedback_id}", headers=platform.auth("feedback:read"))).json()
    assert fetched["status"] == "closed"
    history = fetched["history"]
    expected_from = ["new", "acknowledged", "in_progress", "resolved"]
    assert [(h["from_status"], h["to_status"], h["note"], h["changed_by"]) for h in history] == [
        (before, status, note, sub) for before, (status, note, sub) in zip(expected_from, steps, strict=True)
    ]
    times = [datetime.fromisoformat(h["changed_at"]) for h in history]
    assert times == sorted(times)
    assert started <= times[0] <= datetime.now(UTC)
    assert fetched["updated_at"] == history[-1]["changed_at"]
    assert fetched["created_at"] == created["created_at"]


@pytest.mark.parametrize("reopen_from", ["resolved", "closed"])
async def test_resolved_or_closed_feedback_can_be_reopened_then_acknowledged(
    client: httpx.AsyncClient, platform: Platform, reopen_from: str
) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    path = ["acknowledged", "in_progress", "resolved", "closed"]
    await _walk(client, platform, created["id"], *path[: path.index(reopen_from) + 1])

    reopened = await _walk(client, platform, created["id"], "reopened")
    assert reopened["status"] == "reopened"
    assert reopened["history"][-1]["from_status"] == reopen_from
    again = await _walk(client, platform, created["id"], "acknowledged", "in_progress", "resolved")
    assert [h["to_status"] for h in again["history"]][-4:] == ["reopened", "acknowledged", "in_progress", "resolved"]


ILLEGAL_MOVES = [
    ([], "in_progress"),
    ([], "resolved"),
    ([], "closed"),
    ([], "reopened"),
    ([], "new"),
    (["acknowledged"], "acknowledged"),
    (["acknowledged"], "resolved"),
    (["acknowledged"], "new"),
    (["acknowledged", "in_progress"], "closed"),
    (["acknowledged", "in_progress"], "reopened"),
    (["acknowledged", "in_progress", "resolved"], "in_progress"),
    (["acknowledged", "in_progress", "resolved", "closed"], "resolved"),
    (["acknowledged", "in_progress", "resolved", "closed"], "acknowledged"),
    (["acknowledged", "in_progress", "resolved", "reopened"], "in_progress"),
    (["acknowledged", "in_progress", "resolved", "reopened"], "closed"),
]


@pytest.mark.parametrize(
    ("path", "target"), ILLEGAL_MOVES, ids=[f"{(p or ['new'])[-1]}-to-{t}" for p, t in ILLEGAL_MOVES]
)
async def test_any_other_move_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, platform: Platform, path: list[str], target: str
) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    await _walk(client, platform, created["id"], *path)
    before = (await client.get(f"/v1/feedback/{created['id']}", headers=platform.auth("feedback:read"))).json()

    response = await _move(client, platform, created["id"], target)

    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["type"].endswith("illegal-status-move")
    assert problem["current_status"] == (path or ["new"])[-1]
    after = (await client.get(f"/v1/feedback/{created['id']}", headers=platform.auth("feedback:read"))).json()
    assert after == before


async def test_moving_unknown_feedback_is_404(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await _move(client, platform, "00000000-0000-4000-8000-000000000001", "acknowledged")
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"status": "done"}, ["body", "status"]),
        ({"note": "no status"}, ["body", "status"]),
        ({"status": "acknowledged", "note": "x" * 2001}, ["body", "note"]),
    ],
    ids=["unknown_status", "missing_status", "note_too_long"],
)
async def test_bad_move_is_a_422_naming_the_field(
    client: httpx.AsyncClient, platform: Platform, body: dict[str, Any], loc: list[str]
) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    response = await client.patch(f"/v1/feedback/{created['id']}", json=body, headers=platform.auth("feedback:write"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc


async def test_moving_with_a_read_only_token_is_403(client: httpx.AsyncClient, platform: Platform) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    response = await client.patch(
        f"/v1/feedback/{created['id']}", json={"status": "acknowledged"}, headers=platform.auth("feedback:read")
    )
    assert response.status_code == 403
