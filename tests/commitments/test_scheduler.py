"""Due-soon and overdue fire once each, within a second of their moment, whatever the replicas do."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest

from services.commitments.app import create_app
from tests.commitments.conftest import commitments_settings
from tests.commitments.support import LEAD_SECONDS, at, create, events_about, in_seconds, unique, wait_for_status
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


def moment_of(event: dict[str, Any]) -> str:
    return str(event["data"]["due_soon_at"] if event["type"] == "commitment.due_soon" else event["data"]["due_at"])


def lateness(event: dict[str, Any]) -> float:
    """Seconds from the event's moment to when the scheduler wrote it (the CloudEvent `time`)."""
    return (at(event["time"]) - at(moment_of(event))).total_seconds()


async def test_due_soon_and_overdue_fire_once_each_near_their_moment(
    client: httpx.AsyncClient, writer: dict[str, str], platform: Platform
) -> None:
    created = await create(client, writer, due_at=in_seconds(2.0))
    overdue = await wait_for_status(client, writer, created["id"], "overdue")
    events = await events_about(platform, {created["id"]}, until=3)
    assert [e["type"] for e in events] == ["commitment.created", "commitment.due_soon", "commitment.overdue"]
    due_soon_event, overdue_event = events[1], events[2]
    assert due_soon_event["data"]["status"] == "due_soon"
    assert overdue_event["data"] == overdue
    for event in (due_soon_event, overdue_event):
        assert 0 <= lateness(event) < 1.0, event
    armed = await platform.fetch("commitments", "SELECT next_event_at FROM commitment WHERE id = $1", created["id"])
    assert armed[0]["next_event_at"] is None


async def test_due_soon_fires_at_once_when_created_inside_the_lead_time(
    client: httpx.AsyncClient, writer: dict[str, str], platform: Platform
) -> None:
    created = await create(client, writer, due_at=in_seconds(LEAD_SECONDS / 2))
    assert created["status"] == "open"
    events = await events_about(platform, {created["id"]}, until=2)
    assert events[1]["type"] == "commitment.due_soon"
    assert (at(events[1]["time"]) - at(created["created_at"])).total_seconds() < 1.0


async def test_rescheduling_rearms_both_events_for_the_new_date(
    client: httpx.AsyncClient, writer: dict[str, str], platform: Platform
) -> None:
    created = await create(client, writer, due_at=in_seconds(1.8))
    await wait_for_status(client, writer, created["id"], "due_soon")
    new_due_at = in_seconds(2.0)
    moved = await client.post(
        f"/v1/commitments/{created['id']}/reschedule",
        json={"due_at": new_due_at.isoformat(), "reason": "Parts arrive a day late."},
        headers=writer,
    )
    assert moved.json()["status"] == "open"
    await wait_for_status(client, writer, created["id"], "overdue")
    events = await events_about(platform, {created["id"]}, until=5)
    assert [e["type"] for e in events] == [
        "commitment.created",
        "commitment.due_soon",
        "commitment.rescheduled",
        "commitment.due_soon",
        "commitment.overdue",
    ]
    assert at(events[1]["data"]["due_at"]) == at(created["due_at"])
    for rearmed in events[3:]:
        assert at(rearmed["data"]["due_at"]) == new_due_at
        assert 0 <= lateness(rearmed) < 1.0, rearmed


async def test_completing_after_the_due_date_is_met_late(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer, due_at=in_seconds(0.6))
    await wait_for_status(client, writer, created["id"], "overdue")
    response = await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)
    assert response.status_code == 200, response.text
    met = response.json()
    assert met["status"] == "met_late"
    assert at(met["completed_at"]) > at(met["due_at"])


async def test_kept_and_cancelled_commitments_fire_no_due_events(
    client: httpx.AsyncClient, writer: dict[str, str], platform: Platform
) -> None:
    kept = await create(client, writer, due_at=in_seconds(1.5))
    dropped = await create(client, writer, due_at=in_seconds(1.5))
    await client.post(f"/v1/commitments/{kept['id']}/complete", headers=writer)
    await client.post(f"/v1/commitments/{dropped['id']}/cancel", headers=writer)
    # A witness due at the same moment proves the scheduler passed it.
    witness = await create(client, writer, due_at=in_seconds(1.5))
    await wait_for_status(client, writer, witness["id"], "overdue")
    events = await events_about(platform, {kept["id"], dropped["id"], witness["id"]}, until=7)
    fired = Counter((e["subject"], e["type"]) for e in events if e["type"].endswith(("due_soon", "overdue")))
    assert fired == {(witness["id"], "commitment.due_soon"): 1, (witness["id"], "commitment.overdue"): 1}


async def test_two_replicas_and_a_restart_fire_each_moment_exactly_once(
    platform: Platform, writer: dict[str, str]
) -> None:
    settings = commitments_settings(platform)
    customer = unique("customer")
    async with serve(create_app(settings)) as first:
        second_app = create_app(settings)
        async with serve(second_app) as second:
            made = [
                await create(second, writer, customer_id=customer, due_at=in_seconds(1.2 + i * 0.06)) for i in range(25)
            ]
            # The second replica stops in the middle of the moments (the first one's overdue has fired) and comes back.
            await wait_for_status(second, writer, made[0]["id"], "overdue")
        async with serve(create_app(settings)):
            for commitment in made:
                await wait_for_status(first, writer, commitment["id"], "overdue")
    subjects = {c["id"] for c in made}
    events = await events_about(platform, subjects, until=3 * len(made))
    distinct = {(e["subject"], e["type"], e["id"]) for e in events}
    per_moment = Counter((subject, kind) for subject, kind, _ in distinct)
    expected = {(s, kind) for s in subjects for kind in ("commitment.due_soon", "commitment.overdue")}
    assert {key for key in per_moment if key[1] != "commitment.created"} == expected
    assert all(count == 1 for count in per_moment.values()), per_moment


async def test_scheduler_listens_again_after_losing_its_connection(
    client: httpx.AsyncClient, writer: dict[str, str], platform: Platform
) -> None:
    listening = (
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND query ILIKE 'LISTEN %commitment_schedule%'"
    )
    killed = await platform.fetch(
        "commitments", f"SELECT pid, pg_terminate_backend(pid) AS killed FROM ({listening}) AS l"
    )
    assert killed
    assert all(row["killed"] for row in killed)

    async def listening_again() -> bool:
        pids = {row["pid"] for row in await platform.fetch("commitments", listening)}
        return len(pids - {row["pid"] for row in killed}) >= len(killed)

    await eventually(listening_again)
    created = await create(client, writer, due_at=in_seconds(LEAD_SECONDS + 1.0))
    events = await events_about(platform, {created["id"]}, until=2)
    assert events[1]["type"] == "commitment.due_soon"
    assert 0 <= lateness(events[1]) < 1.0, events[1]
