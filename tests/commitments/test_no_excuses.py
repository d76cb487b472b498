"""No excuses (contract §5, v1.1): kept only if met by the date the customer last agreed to, and never overdue."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import pytest_asyncio

from tests.commitments.support import create, in_seconds, unique, wait_for_status
from tests.support.platform import Platform


@pytest.fixture
def writer(platform: Platform) -> dict[str, str]:
    return platform.auth("commitments:read", "commitments:write")


@pytest.fixture(scope="module")
def owner() -> str:
    return unique("dana")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def ledger(client: httpx.AsyncClient, platform: Platform, owner: str) -> dict[str, dict[str, Any]]:
    """One owner's promises, each taken down one road; the value is the promise at the end of it."""
    writer = platform.auth("commitments:read", "commitments:write")

    async def post(commitment: dict[str, Any], action: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        response = await client.post(f"/v1/commitments/{commitment['id']}/{action}", json=body, headers=writer)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    def moved(days: float, *, agreed: bool) -> dict[str, Any]:
        return {"due_at": in_seconds(days * 86_400).isoformat(), "reason": "Parts late.", "customer_agreed": agreed}

    made: dict[str, dict[str, Any]] = {}
    overdue_then_agreed = await create(client, writer, owner_id=owner, due_at=in_seconds(1.2))
    cancelled_after_due = await create(client, writer, owner_id=owner, due_at=in_seconds(1.2))
    unagreed = await create(client, writer, owner_id=owner)
    agreed = await create(client, writer, owner_id=owner)
    agreed_cancel = await create(client, writer, owner_id=owner)
    unagreed_cancel = await create(client, writer, owner_id=owner)

    await post(unagreed, "reschedule", moved(2, agreed=False))
    made["unagreed"] = await post(unagreed, "complete")
    await post(agreed, "reschedule", moved(2, agreed=True))
    made["agreed"] = await post(agreed, "complete")
    made["agreed_cancel"] = await post(agreed_cancel, "cancel", {"customer_agreed": True})
    made["unagreed_cancel"] = await post(unagreed_cancel, "cancel", {"reason": "Too busy."})

    await wait_for_status(client, writer, overdue_then_agreed["id"], "overdue")
    await wait_for_status(client, writer, cancelled_after_due["id"], "overdue")
    await post(overdue_then_agreed, "reschedule", moved(1, agreed=True))
    made["overdue_then_agreed"] = await post(overdue_then_agreed, "complete")
    made["cancelled_after_due"] = await post(cancelled_after_due, "cancel", {"customer_agreed": True})
    return made


def judged(commitment: dict[str, Any]) -> tuple[str, bool | None, str | None, int]:
    return commitment["status"], commitment["kept"], commitment["broken_because"], commitment["excuses"]


async def test_a_new_promise_is_undecided(client: httpx.AsyncClient, writer: dict[str, str]) -> None:
    created = await create(client, writer)
    assert (created["kind"], created["kept"], created["broken_because"], created["excuses"]) == (
        "promise",
        None,
        None,
        0,
    )


async def test_overdue_promise_stays_broken_after_an_agreed_reschedule(ledger: dict[str, dict[str, Any]]) -> None:
    # Met before its new date, yet it went overdue first: nothing mends it.
    assert judged(ledger["overdue_then_agreed"]) == ("met_on_time", False, "overdue", 1)


async def test_reschedule_without_agreement_breaks_the_promise(ledger: dict[str, dict[str, Any]]) -> None:
    assert judged(ledger["unagreed"]) == ("met_on_time", False, "rescheduled_without_agreement", 1)
    assert ledger["unagreed"]["history"][0]["customer_agreed"] is False


async def test_cancelling_after_the_due_date_breaks_the_promise_even_agreed(
    ledger: dict[str, dict[str, Any]],
) -> None:
    # It went overdue first, and that is the reason it keeps; the cancellation is one more excuse.
    assert judged(ledger["cancelled_after_due"]) == ("cancelled", False, "overdue", 1)


async def test_cancelling_without_agreement_breaks_the_promise(ledger: dict[str, dict[str, Any]]) -> None:
    assert judged(ledger["unagreed_cancel"]) == ("cancelled", False, "cancelled_without_agreement", 1)


async def test_agreed_reschedule_then_met_is_kept(ledger: dict[str, dict[str, Any]]) -> None:
    assert judged(ledger["agreed"]) == ("met_on_time", True, None, 0)
    assert ledger["agreed"]["history"][0]["customer_agreed"] is True


async def test_agreed_early_cancellation_is_neither_kept_nor_broken(ledger: dict[str, dict[str, Any]]) -> None:
    assert judged(ledger["agreed_cancel"]) == ("cancelled", None, None, 0)


async def test_a_broken_promise_cannot_be_mended_by_completing_it(
    client: httpx.AsyncClient, writer: dict[str, str]
) -> None:
    created = await create(client, writer, due_at=in_seconds(1.0))
    await wait_for_status(client, writer, created["id"], "overdue")
    met = (await client.post(f"/v1/commitments/{created['id']}/complete", headers=writer)).json()
    assert judged(met) == ("met_late", False, "overdue", 0)


@pytest.mark.usefixtures("ledger")
async def test_metrics_count_kept_broken_and_excuses_per_owner_and_kind(
    client: httpx.AsyncClient, writer: dict[str, str], owner: str
) -> None:
    response = await client.get("/v1/commitments/metrics", params={"owner_id": owner}, headers=writer)
    assert response.status_code == 200, response.text
    metrics = response.json()
    expected = {"kept": 1, "broken": 4, "kept_rate": pytest.approx(1 / 5), "excuses": 4}
    assert {key: metrics["total"][key] for key in expected} == expected
    [by_owner] = metrics["owners"]
    assert {key: by_owner[key] for key in expected} == expected
    assert [kind["kind"] for kind in metrics["kinds"]] == ["promise"]
    assert {key: metrics["kinds"][0][key] for key in expected} == expected
    sales = next(d for d in metrics["departments"] if d["department"] == "sales")
    assert {key: sales[key] for key in expected} == expected
    # Existing figures keep their meaning: the three cancelled ones are not due.
    assert metrics["total"]["due"] == 3
    assert metrics["total"]["cancelled"] == 3
