"""Least privilege for subscriptions (issue 14, item 4): replays re-check who asks, secrets are never kept in clear.

Over real HTTP against the running service: an `Idempotency-Key` replay is served only to a caller allowed to
make the request now, keys are scoped to `sub` and `department`, a stored response holds no secret, and the
secrets in the subscription table are encrypted while deliveries still verify with `standardwebhooks`.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook

from services.notifications.app import create_app
from services.notifications.webhooks.signing import new_secret
from shared import catalogue
from tests.notifications.conftest import RunningService, notifications_settings
from tests.notifications.helpers import EventPublisher, Receiver, customer, feedback
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually

SHOWN_ONCE = {"secret": None, "note": "secret_shown_once"}


def _sub() -> str:
    return f"admin-{uuid.uuid4().hex[:8]}"


def _headers(platform: Platform, *scopes: str, sub: str, key: str, department: str | None = None) -> dict[str, str]:
    return {**platform.auth(*scopes, sub=sub, department=department), "Idempotency-Key": key}


async def _post(service: RunningService, body: dict[str, Any], headers: dict[str, str]) -> httpx.Response:
    return await service.client.post("/v1/subscriptions", json=body, headers=headers)


async def _subscriptions_at(platform: Platform, url: str) -> list[dict[str, Any]]:
    rows = await platform.fetch("notifications", "SELECT id, department, secret FROM subscription WHERE url = $1", url)
    return [dict(row) for row in rows]


async def test_a_replay_to_a_token_of_another_department_is_refused(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    # Issue 14: a `sales` token with support's key and body (and the same `sub`) got support's 201 and secret.
    sub, key, url = _sub(), f"k-{uuid.uuid4()}", receiver.endpoint()
    body = {"department": "support", "url": url, "event_types": []}
    first = await _post(notifications, body, _headers(platform, "notifications:admin", sub=sub, key=key))
    assert first.status_code == 201, first.text

    sales = _headers(platform, "notifications:admin", sub=sub, key=key, department="sales")
    again = await _post(notifications, body, sales)

    assert again.status_code == 403, again.text
    assert "secret" not in again.json()
    assert "Idempotent-Replayed" not in again.headers
    assert len(await _subscriptions_at(platform, url)) == 1


async def test_a_replay_to_a_token_without_the_scope_is_refused(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    sub, key = _sub(), f"k-{uuid.uuid4()}"
    body = {"department": "production", "url": receiver.endpoint(), "event_types": []}
    first = await _post(notifications, body, _headers(platform, "notifications:admin", sub=sub, key=key))
    assert first.status_code == 201, first.text

    reader = await _post(notifications, body, _headers(platform, "notifications:read", sub=sub, key=key))

    assert reader.status_code == 403, reader.text
    assert reader.json()["type"].endswith("insufficient-scope")
    assert "Idempotent-Replayed" not in reader.headers


async def test_the_same_key_of_one_sub_in_two_departments_are_two_keys(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    sub, key = _sub(), f"k-{uuid.uuid4()}"
    created: dict[str, dict[str, Any]] = {}
    for department in ("sales", "support"):
        body: dict[str, Any] = {"department": department, "url": receiver.endpoint(), "event_types": []}
        headers = _headers(platform, "notifications:admin", sub=sub, key=key, department=department)
        response = await _post(notifications, body, headers)
        # Another body under the same key would be a 422 if the keys collided.
        assert response.status_code == 201, response.text
        assert "Idempotent-Replayed" not in response.headers
        created[department] = response.json()
    assert created["sales"]["id"] != created["support"]["id"]
    rows = await platform.fetch(
        "notifications", "SELECT department FROM idempotency_key WHERE sub = $1 AND key = $2 ORDER BY 1", sub, key
    )
    assert [row["department"] for row in rows] == ["sales", "support"]


async def test_a_replay_shows_no_secret_and_the_stored_response_holds_none(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    sub, key = _sub(), f"k-{uuid.uuid4()}"
    body = {"department": "sales", "url": receiver.endpoint(), "event_types": ["commitment.*"]}
    headers = _headers(platform, "notifications:admin", sub=sub, key=key)

    first = await _post(notifications, body, headers)
    again = await _post(notifications, body, headers)

    assert (first.status_code, again.status_code) == (201, 201)
    secret = first.json()["secret"]
    assert secret.startswith("whsec_")
    assert first.json()["note"] is None
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == {**first.json(), **SHOWN_ONCE}
    [stored] = await platform.fetch(
        "notifications", "SELECT response_body FROM idempotency_key WHERE sub = $1 AND key = $2", sub, key
    )
    raw = bytes(stored["response_body"])
    assert secret.encode() not in raw
    assert secret.removeprefix("whsec_").encode() not in raw
    assert orjson.loads(raw) == {**first.json(), **SHOWN_ONCE}


async def test_secrets_are_encrypted_at_rest_and_deliveries_still_verify(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    response = await _post(
        notifications,
        {"department": "support", "url": url, "event_types": ["feedback.*"]},
        platform.auth("notifications:admin"),
    )
    assert response.status_code == 201, response.text
    secret = response.json()["secret"]

    [row] = await _subscriptions_at(platform, url)
    assert not row["secret"].startswith("whsec_")
    assert secret.removeprefix("whsec_") not in row["secret"]

    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    request = await _delivery_of(receiver, url, customer_id)
    assert Webhook(secret).verify(request.body, request.headers)["id"] == str(record.event_id)


@pytest.mark.usefixtures("notifications")  # its dispatcher delivers
async def test_a_secret_stored_in_plain_text_is_encrypted_at_start_and_still_signs(
    publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    # As a database from before encryption holds it (and as the benchmark writes it).
    url, secret, subscription_id = receiver.endpoint(), new_secret(), uuid.uuid4()
    await platform.fetch(
        "notifications",
        "INSERT INTO subscription (id, department, url, event_types, secret, created_by) "
        "VALUES ($1, 'production', $2, ARRAY['feedback.*'], $3, 'before-encryption')",
        subscription_id,
        url,
        secret,
    )

    # Another process of the service starts (no workers: the running one keeps delivering).
    async with serve(create_app(notifications_settings(platform, run_workers=False))):
        [row] = await _subscriptions_at(platform, url)
    assert not row["secret"].startswith("whsec_")

    customer_id = customer()
    record = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "suggestion"), customer_id=customer_id
    )
    request = await _delivery_of(receiver, url, customer_id)
    assert Webhook(secret).verify(request.body, request.headers)["id"] == str(record.event_id)


async def _delivery_of(receiver: Receiver, url: str, customer_id: str) -> Any:
    async def arrived() -> Any:
        found = [r for r in receiver.received(url) if orjson.loads(r.body).get("customerid") == customer_id]
        return found[0] if found else None

    return await eventually(arrived, within=20)
