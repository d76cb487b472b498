"""The demand backlog: expectations carry the platform's themes; capability gaps grouped by theme, most customers first.

Every test reads only what it recorded: the gaps between the moment it starts and the moment it ends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from tests.expectations.factories import expectation, expectation_body, meeting, unique
from tests.expectations.test_events import events_of, types_of
from tests.support.platform import Platform

DELIVERY = "The parcels keep arriving late, our line stands still."
BILLING = "Every invoice has a wrong charge on it."
NO_THEME = "We would like one named contact for everything."


async def gap(
    client: httpx.AsyncClient, headers: dict[str, str], meeting_id: str, statement: str, **fields: Any
) -> dict[str, Any]:
    """A capability gap heard in the customer's words (the restatement mentions no theme)."""
    fields = {"capability": "cannot_meet", "restatement": "We understood your point.", **fields}
    return await expectation(client, headers, meeting_id, statement=statement, **fields)


async def backlog(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> list[dict[str, Any]]:
    response = await client.get("/v1/expectations/gaps", params=params, headers=headers)
    assert response.status_code == 200, response.text
    themes: list[dict[str, Any]] = response.json()["themes"]
    return themes


def moment() -> str:
    return datetime.now(UTC).isoformat()


async def test_themes_come_from_the_statement_and_restatement_on_create_and_revise(
    client: httpx.AsyncClient, headers: dict[str, str], platform: Platform
) -> None:
    customer_id = unique("customer")
    held = await meeting(client, headers, customer_id)
    recorded = await expectation(
        client,
        headers,
        held["id"],
        statement="Our invoices must be right.",
        restatement="Deliveries arrive by Friday and the invoice matches the order.",
        capability="partial",
    )
    # In taxonomy order (delivery before billing), each theme once.
    assert recorded["themes"] == ["delivery", "billing"]

    revision = expectation_body(statement="Nobody answers when we call support.", restatement="Answer within a day.")
    revised = await client.post(f"/v1/expectations/{recorded['id']}/revise", json=revision, headers=headers)
    assert revised.status_code == 200, revised.text
    assert revised.json()["themes"] == ["support_responsiveness"]
    assert revised.json()["history"][0]["themes"] == ["delivery", "billing"]
    fetched = await client.get(f"/v1/expectations/{recorded['id']}", headers=headers)
    assert fetched.json()["themes"] == ["support_responsiveness"]

    events = await events_of(platform, customer_id, until=lambda found: len(found) >= 4)
    assert types_of(events)[0] == "meeting.recorded"
    by_type = [(e["type"], e["data"].get("themes")) for e in events if e["type"].startswith("expectation.")]
    assert by_type == [
        ("expectation.recorded", ["delivery", "billing"]),
        ("expectation.gap_identified", ["delivery", "billing"]),
        ("expectation.recorded", ["support_responsiveness"]),
    ]


async def test_gaps_are_grouped_by_theme_most_customers_first_with_examples_in_their_own_words(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    since = moment()
    held = {name: await meeting(client, headers, unique(name)) for name in "ACEFGH"}
    held["B"] = await meeting(client, headers, unique("B"), customer_kind="internal")
    a_first = await gap(client, headers, held["A"]["id"], DELIVERY)
    b_both = await gap(
        client, headers, held["B"]["id"], f"{BILLING} And the deliveries are late.", capability="partial"
    )
    a_latest = await gap(client, headers, held["A"]["id"], "Shipping takes two weeks, far too long.")
    e_delivery = await gap(client, headers, held["E"]["id"], "The courier never calls ahead.")
    h_delivery = await gap(client, headers, held["H"]["id"], "Tracking shows nothing for days.")
    # One customer with many gaps that mention no theme: more gaps than billing, but fewer customers.
    for words in (NO_THEME, "A yearly review with your board.", "Our own account manager."):
        await gap(client, headers, held["C"]["id"], words)
    # Revised out of the backlog: only current versions count.
    g_gone = await gap(client, headers, held["G"]["id"], "The deliveries come late.")
    revised = await client.post(
        f"/v1/expectations/{g_gone['id']}/revise", json=expectation_body(capability="can_meet"), headers=headers
    )
    assert revised.status_code == 200, revised.text
    # Revised into the backlog.
    f_met = await expectation(client, headers, held["F"]["id"], statement=BILLING, capability="can_meet")
    f_revised = await client.post(
        f"/v1/expectations/{f_met['id']}/revise",
        json=expectation_body(statement="Refunds take months.", restatement="Faster refunds.", capability="partial"),
        headers=headers,
    )
    assert f_revised.status_code == 200, f_revised.text
    # Met expectations are no gaps.
    await expectation(client, headers, held["E"]["id"], statement=DELIVERY, capability="can_meet")
    until = moment()

    themes = await backlog(client, headers, since=since, until=until)

    assert [(t["theme"], t["customers"], t["expectations"]) for t in themes] == [
        ("delivery", 4, 5),
        ("billing", 2, 2),
        ("unthemed", 1, 3),
    ]
    assert [t["label"] for t in themes] == ["Delivery", "Billing", "Unthemed"]
    delivery = themes[0]
    # One example per customer (its latest gap), the most recently recorded first, at most three,
    # in the customer's own words (the statement, never our restatement).
    assert delivery["examples"] == [
        {"expectation_id": gap_["id"], "customer_id": gap_["customer_id"], "statement": gap_["statement"]}
        for gap_ in (h_delivery, e_delivery, a_latest)
    ]
    assert a_first["id"] not in {e["expectation_id"] for e in delivery["examples"]}
    assert {e["expectation_id"] for e in themes[1]["examples"]} == {b_both["id"], f_met["id"]}
    assert {e["statement"] for e in themes[1]["examples"]} == {b_both["statement"], "Refunds take months."}
    assert [e["statement"] for e in themes[2]["examples"]] == ["Our own account manager."]

    assert [t["theme"] for t in await backlog(client, headers, since=since, until=until, limit="1")] == ["delivery"]


async def test_the_backlog_filters_by_customer_kind_and_time(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    since = moment()
    outside = await meeting(client, headers, unique("external"))
    inside = await meeting(client, headers, unique("internal"), customer_kind="internal")
    await gap(client, headers, outside["id"], DELIVERY)
    await gap(client, headers, outside["id"], NO_THEME)
    await gap(client, headers, inside["id"], BILLING)
    until = moment()

    internal = await backlog(client, headers, since=since, until=until, customer_kind="internal")
    assert [(t["theme"], t["customers"]) for t in internal] == [("billing", 1)]
    external = await backlog(client, headers, since=since, until=until, customer_kind="external")
    assert [(t["theme"], t["customers"]) for t in external] == [("delivery", 1), ("unthemed", 1)]
    assert await backlog(client, headers, since=until) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"customer_kind": "partner"}, "customer_kind"),
        ({"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"limit": "51"}, "limit"),
    ],
)
async def test_a_bad_backlog_query_is_a_problem_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await client.get("/v1/expectations/gaps", params=params, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in response.text


async def test_the_backlog_needs_the_read_scope(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.get("/v1/expectations/gaps", headers=platform.auth("feedback:read"))
    assert response.status_code == 403, response.text


async def test_meetings_and_expectations_lists_filter_by_customer_kind(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    customer_id = unique("customer")
    outside = await meeting(client, headers, customer_id)
    inside = await meeting(client, headers, customer_id, customer_kind="internal")
    heard_outside = await expectation(client, headers, outside["id"])
    heard_inside = await expectation(client, headers, inside["id"])

    async def ids(path: str, **params: str) -> list[str]:
        response = await client.get(path, params={"customer_id": customer_id, **params}, headers=headers)
        assert response.status_code == 200, response.text
        return [item["id"] for item in response.json()["items"]]

    assert await ids("/v1/meetings", customer_kind="internal") == [inside["id"]]
    assert await ids("/v1/meetings", customer_kind="external") == [outside["id"]]
    assert await ids("/v1/meetings") == [inside["id"], outside["id"]]
    assert await ids("/v1/expectations", customer_kind="internal") == [heard_inside["id"]]
    assert await ids("/v1/expectations", customer_kind="external") == [heard_outside["id"]]
    # Without customer_id too: the filter alone, along its own index.
    internal_page = await client.get("/v1/expectations", params={"customer_kind": "internal"}, headers=headers)
    assert {item["customer_kind"] for item in internal_page.json()["items"]} == {"internal"}


@pytest.mark.parametrize(
    ("statement", "index"),
    [
        (
            "SELECT * FROM meeting WHERE customer_kind = 'internal' ORDER BY created_at DESC, id DESC LIMIT 51",
            "ix_meeting_customer_kind_created_at_id",
        ),
        (
            "SELECT * FROM expectation WHERE customer_kind = 'internal' ORDER BY created_at DESC, id DESC LIMIT 51",
            "ix_expectation_customer_kind_created_at_id",
        ),
        (
            "SELECT * FROM expectation WHERE capability IN ('partial', 'cannot_meet')"
            " AND recorded_at >= now() - interval '30 days'",
            # On a table as small as the suite's the planner may walk the other gap index instead.
            "ix_expectation_gap_",
        ),
        (
            "SELECT * FROM expectation WHERE capability IN ('partial', 'cannot_meet') AND customer_kind = 'internal'"
            " AND recorded_at >= now() - interval '30 days'",
            # Its gap index, or on a table this small the list's customer_kind index, filtered.
            "ix_expectation_gap_customer_kind_recorded_at|ix_expectation_customer_kind_created_at_id",
        ),
    ],
)
async def test_the_customer_kind_filters_and_the_backlog_are_served_by_indexes(
    platform: Platform, statement: str, index: str
) -> None:
    plan = await platform.plan("expectations", statement)
    assert any(name in plan for name in index.split("|")), plan
    assert "Seq Scan" not in plan, plan
