"""Accountability per department and per owner, against values worked out by hand."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.commitments.support import EXTRA_DEPARTMENT, at, create, in_seconds, unique, wait_for_status
from tests.support.platform import Platform


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


@pytest.fixture(scope="module")
def owners() -> tuple[str, str]:
    return unique("ana"), unique("ben")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(client: httpx.AsyncClient, platform: Platform, owners: tuple[str, str]) -> dict[str, Any]:
    """Ana: one kept on time, one kept late, one overdue. Ben: two open (one moved twice), one cancelled.

    Only this module uses the extra department, so its figures are these six promises alone.
    """
    ana, ben = owners
    writer = platform.auth("commitments:read", "commitments:write")
    made: dict[str, Any] = {}

    async def promise(name: str, owner: str, seconds: float) -> dict[str, Any]:
        commitment = await create(
            client, writer, owner_id=owner, department=EXTRA_DEPARTMENT, due_at=in_seconds(seconds)
        )
        made[name] = commitment
        return commitment

    on_time = await promise("on_time", ana, 86_400)
    late = await promise("late", ana, 0.8)
    overdue = await promise("overdue", ana, 0.8)
    await promise("open", ben, 86_400)
    moved = await promise("moved", ben, 86_400)
    cancelled = await promise("cancelled", ben, 86_400)
    await client.post(f"/v1/commitments/{on_time['id']}/complete", headers=writer)
    for days in (2, 3):
        await client.post(
            f"/v1/commitments/{moved['id']}/reschedule",
            json={"due_at": in_seconds(days * 86_400).isoformat(), "reason": "Waiting on the customer."},
            headers=writer,
        )
    await client.post(f"/v1/commitments/{cancelled['id']}/cancel", headers=writer)
    await wait_for_status(client, writer, overdue["id"], "overdue")
    await wait_for_status(client, writer, late["id"], "overdue")
    made["late"] = (await client.post(f"/v1/commitments/{late['id']}/complete", headers=writer)).json()
    return made


def lateness_hours(commitment: dict[str, Any]) -> float:
    return (at(commitment["completed_at"]) - at(commitment["due_at"])).total_seconds() / 3600


async def test_metrics_count_each_department_and_owner(
    client: httpx.AsyncClient, writer: dict[str, str], ledger: dict[str, Any], owners: tuple[str, str]
) -> None:
    response = await client.get("/v1/commitments/metrics", params={"department": EXTRA_DEPARTMENT}, headers=writer)
    assert response.status_code == 200, response.text
    metrics = response.json()
    late_hours = lateness_hours(ledger["late"])
    ana: dict[str, Any] = {
        "due": 3,
        "met_on_time": 1,
        "met_late": 1,
        "overdue": 1,
        "open": 0,
        "cancelled": 0,
        "on_time_rate": pytest.approx(1 / 3),
        "mean_lateness_hours": pytest.approx(late_hours),
        "renegotiations": 0,
        "kept": 1,
        "broken": 2,
        "kept_rate": pytest.approx(1 / 3),
        "excuses": 0,
    }
    ben: dict[str, Any] = {
        "due": 2,
        "met_on_time": 0,
        "met_late": 0,
        "overdue": 0,
        "open": 2,
        "cancelled": 1,
        "on_time_rate": None,
        "mean_lateness_hours": None,
        "renegotiations": 2,
        # Moved and cancelled without the customer's agreement: broken, three excuses.
        "kept": 0,
        "broken": 2,
        "kept_rate": 0.0,
        "excuses": 3,
    }
    department: dict[str, Any] = {
        "due": 5,
        "met_on_time": 1,
        "met_late": 1,
        "overdue": 1,
        "open": 2,
        "cancelled": 1,
        "on_time_rate": pytest.approx(1 / 3),
        "mean_lateness_hours": pytest.approx(late_hours),
        "renegotiations": 2,
        "kept": 1,
        "broken": 4,
        "kept_rate": pytest.approx(1 / 5),
        "excuses": 3,
    }
    assert metrics["departments"] == [{"department": EXTRA_DEPARTMENT, **department}]
    by_owner = {owners[0]: ana, owners[1]: ben}
    assert metrics["owners"] == [{"owner_id": owner, **by_owner[owner]} for owner in sorted(by_owner)]
    assert metrics["total"] == department


async def test_metrics_window_counts_only_promises_due_in_it(
    client: httpx.AsyncClient, writer: dict[str, str], ledger: dict[str, Any], owners: tuple[str, str]
) -> None:
    since = at(ledger["late"]["due_at"]) - timedelta(minutes=1)
    until = in_seconds(3600)
    response = await client.get(
        "/v1/commitments/metrics",
        params={"department": EXTRA_DEPARTMENT, "since": since.isoformat(), "until": until.isoformat()},
        headers=writer,
    )
    metrics = response.json()
    assert metrics["total"]["due"] == 2
    assert metrics["total"]["met_late"] == 1
    assert metrics["total"]["overdue"] == 1
    assert metrics["total"]["on_time_rate"] == 0.0
    assert [o["owner_id"] for o in metrics["owners"]] == [owners[0]]


@pytest.mark.usefixtures("ledger")
async def test_metrics_for_one_owner_cover_only_that_owner(
    client: httpx.AsyncClient, writer: dict[str, str], owners: tuple[str, str]
) -> None:
    response = await client.get("/v1/commitments/metrics", params={"owner_id": owners[1]}, headers=writer)
    metrics = response.json()
    assert metrics["total"]["due"] == 2
    assert metrics["total"]["renegotiations"] == 2
    assert [o["owner_id"] for o in metrics["owners"]] == [owners[1]]
    shown = {d["department"]: d["due"] for d in metrics["departments"]}
    assert shown == {"sales": 0, "support": 0, "production": 0, "management": 0, EXTRA_DEPARTMENT: 2}


async def test_metrics_with_an_unknown_department_is_422(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.get("/v1/commitments/metrics", params={"department": "legal"}, headers=writer)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "department"]


async def test_metrics_window_ending_before_it_starts_is_422(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    response = await client.get(
        "/v1/commitments/metrics",
        params={"since": in_seconds(60).isoformat(), "until": in_seconds(0).isoformat()},
        headers=writer,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["query", "until"]
