"""The routing-rules API: the seeded defaults, changes, validation, scopes."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared import catalogue
from tests.notifications.conftest import RunningService
from tests.notifications.helpers import EventPublisher, customer, feedback
from tests.support.platform import Platform

DEFAULT_RULE_NAMES = {
    "Complaints and detractors",
    "Compliments and promoters",
    "Suggestions",
    "Questions",
    "Reopened feedback",
    "Customer meetings",
    "Confirmed expectations",
    "Expectation gaps",
    "Commitments, to their department",
    "Overdue commitments, to their department and management",
    "Commitments met late, to their department and management",
}


def a_rule(**changes: Any) -> dict[str, Any]:
    return {
        "name": f"rule {uuid.uuid4().hex[:8]}",
        "event_types": ["commitment.*"],
        "condition": {"all": [{"field": "status", "op": "in", "value": ["overdue", "met_late"]}]},
        "departments": ["management"],
        "department_from": "department",
        "enabled": True,
        **changes,
    }


async def test_default_rules_are_listed_page_by_page(notifications: RunningService, platform: Platform) -> None:
    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 4} | ({"cursor": cursor} if cursor else {})
        response = await notifications.client.get(
            "/v1/routing-rules", params=params, headers=platform.auth("notifications:read")
        )
        assert response.status_code == 200
        seen += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert len({r["id"] for r in seen}) == len(seen)
    assert {r["name"] for r in seen} >= DEFAULT_RULE_NAMES
    complaints = next(r for r in seen if r["name"] == "Complaints and detractors")
    assert complaints["event_types"] == ["feedback.received"]
    assert complaints["departments"] == ["support", "management"]


async def test_rule_is_created_read_replaced_and_deleted(notifications: RunningService, platform: Platform) -> None:
    admin = platform.auth("notifications:admin", "notifications:read", sub=f"admin-{uuid.uuid4()}")
    body = a_rule()
    created = await notifications.client.post("/v1/routing-rules", json=body, headers=admin)
    assert created.status_code == 201
    rule = created.json()
    assert {k: rule[k] for k in body} == body
    assert (await notifications.client.get(f"/v1/routing-rules/{rule['id']}", headers=admin)).json() == rule

    replaced = await notifications.client.put(
        f"/v1/routing-rules/{rule['id']}", json={**body, "enabled": False, "condition": None}, headers=admin
    )
    assert replaced.status_code == 200
    assert (replaced.json()["enabled"], replaced.json()["condition"]) == (False, None)
    assert replaced.json()["updated_at"] > rule["updated_at"]

    assert (await notifications.client.delete(f"/v1/routing-rules/{rule['id']}", headers=admin)).status_code == 204
    assert (await notifications.client.get(f"/v1/routing-rules/{rule['id']}", headers=admin)).status_code == 404


async def test_same_idempotency_key_replays_the_rule(notifications: RunningService, platform: Platform) -> None:
    headers = {
        **platform.auth("notifications:admin", sub=f"admin-{uuid.uuid4()}"),
        "Idempotency-Key": "rule-1",
    }
    body = a_rule()
    first = await notifications.client.post("/v1/routing-rules", json=body, headers=headers)
    again = await notifications.client.post("/v1/routing-rules", json=body, headers=headers)
    other = await notifications.client.post("/v1/routing-rules", json=a_rule(), headers=headers)
    assert (first.status_code, again.status_code, other.status_code) == (201, 201, 422)
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_disabled_rule_routes_nothing(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    passive = {"scale": "nps", "value": 7}
    body = a_rule(
        event_types=["feedback.received"],
        condition={"field": "customer_id", "value": customer_id},
        departments=["sales"],
        department_from=None,
        enabled=False,
    )
    assert (await notifications.client.post("/v1/routing-rules", json=body, headers=platform.auth())).status_code == 201
    record = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=passive), customer_id=customer_id
    )
    await publisher.processed(record)
    listed = await notifications.client.get(
        "/v1/departments/sales/notifications", params={"event_id": str(record.event_id)}, headers=platform.auth()
    )
    assert listed.json()["items"] == []


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"departments": ["legal"]}, ["body", "departments", 0]),
        ({"event_types": ["invoice.*"]}, ["body", "event_types", 0]),
        ({"event_types": []}, ["body", "event_types"]),
        ({"condition": {"field": "rating.value", "op": "between", "value": 3}}, ["body", "condition", "field", "op"]),
        ({"condition": {"kind": "complaint"}}, ["body", "condition"]),
        ({"condition": {"field": "kind", "op": "in", "value": "complaint"}}, ["body", "condition", "field"]),
        ({"department_from": "commitment department"}, ["body", "department_from"]),
        ({"departments": [], "department_from": None}, ["body"]),
        ({"name": ""}, ["body", "name"]),
        ({"name": "nul\u0000in the name"}, ["body", "name"]),
        ({"condition": {"field": "kind", "value": "compl\u0000aint"}}, ["body", "condition", "field", "value"]),
    ],
    ids=[
        "unknown-department",
        "pattern-matching-nothing",
        "no-event-types",
        "unknown-operator",
        "not-a-condition",
        "in-needs-a-list",
        "malformed-field-path",
        "no-department-at-all",
        "empty-name",
        "nul-in-name",
        "nul-in-a-value",
    ],
)
async def test_bad_rule_is_a_problem_naming_the_field(
    notifications: RunningService, platform: Platform, changes: dict[str, Any], field: list[Any]
) -> None:
    response = await notifications.client.post("/v1/routing-rules", json=a_rule(**changes), headers=platform.auth())
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    # A value of a union names the member it failed as a last step; the path before it is the field.
    assert any(e["loc"][: len(field)] == field for e in response.json()["errors"]), response.json()["errors"]


async def test_department_token_reads_rules_but_cannot_change_them(
    notifications: RunningService, platform: Platform
) -> None:
    sales_admin = platform.auth("notifications:admin", "notifications:read", department="sales")
    rule = (await notifications.client.post("/v1/routing-rules", json=a_rule(), headers=platform.auth())).json()
    assert (await notifications.client.get("/v1/routing-rules", headers=sales_admin)).status_code == 200
    for response in (
        await notifications.client.post("/v1/routing-rules", json=a_rule(), headers=sales_admin),
        await notifications.client.put(f"/v1/routing-rules/{rule['id']}", json=a_rule(), headers=sales_admin),
        await notifications.client.delete(f"/v1/routing-rules/{rule['id']}", headers=sales_admin),
    ):
        assert response.status_code == 403, response.text


async def test_read_scope_cannot_change_rules(notifications: RunningService, platform: Platform) -> None:
    response = await notifications.client.post(
        "/v1/routing-rules", json=a_rule(), headers=platform.auth("notifications:read")
    )
    assert response.status_code == 403


async def test_unknown_rule_is_404(notifications: RunningService, platform: Platform) -> None:
    unknown = uuid.uuid4()
    for response in (
        await notifications.client.get(f"/v1/routing-rules/{unknown}", headers=platform.auth()),
        await notifications.client.put(f"/v1/routing-rules/{unknown}", json=a_rule(), headers=platform.auth()),
        await notifications.client.delete(f"/v1/routing-rules/{unknown}", headers=platform.auth()),
    ):
        assert response.status_code == 404, response.text
    malformed = await notifications.client.get("/v1/routing-rules/not-an-id", headers=platform.auth())
    assert malformed.status_code == 422
