"""Webhooks against real local HTTP receivers: signing, retries, disabling, replay, isolation, bad input."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import asyncpg
import orjson
import pytest
from standardwebhooks import Webhook

from services.notifications.app import create_app
from services.notifications.webhooks.dispatcher import WebhookDispatcher
from shared import catalogue
from shared.context import traceparent_var
from shared.db import asyncpg_dsn
from shared.events import CONTENT_TYPE
from tests.notifications.conftest import RunningService, notifications_settings
from tests.notifications.helpers import (
    Answer,
    EventPublisher,
    Received,
    Receiver,
    commitment,
    customer,
    feedback,
    start_webhook_worker,
)
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


async def subscribe(
    service: RunningService,
    platform: Platform,
    url: str,
    department: str = "support",
    event_types: list[str] | None = None,
) -> dict[str, Any]:
    response = await service.client.post(
        "/v1/subscriptions",
        json={"department": department, "url": url, "event_types": event_types or []},
        headers=platform.auth("notifications:admin"),
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def about(customer_id: str, requests: list[Received]) -> list[Received]:
    return [r for r in requests if orjson.loads(r.body).get("customerid") == customer_id]


async def requests_about(
    receiver: Receiver, url: str, customer_id: str, count: int, *, within: float = 15
) -> list[Received]:
    async def enough() -> list[Received] | None:
        found = about(customer_id, receiver.received(url))
        return found if len(found) >= count else None

    return await eventually(enough, within=within)


async def deliveries(service: RunningService, platform: Platform, subscription_id: str) -> list[dict[str, Any]]:
    response = await service.client.get(
        f"/v1/subscriptions/{subscription_id}/deliveries", headers=platform.auth("notifications:read")
    )
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def subscription(service: RunningService, platform: Platform, subscription_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/v1/subscriptions/{subscription_id}", headers=platform.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def disabled(service: RunningService, platform: Platform, subscription_id: str) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        current = await subscription(service, platform, subscription_id)
        return current if current["status"] == "disabled" else None

    return await eventually(check)


async def announced_disabled(platform: Platform, subscription_id: str) -> dict[str, Any]:
    found = await read_topic(
        platform.bootstrap_servers,
        platform.topic(catalogue.OPERATIONS_TOPIC),
        where=lambda r: orjson.loads(r.value)["subject"] == subscription_id,
        until=lambda found: len(found) >= 1,
    )
    assert len(found) == 1
    event: dict[str, Any] = orjson.loads(found[0].value)
    return event


async def stop_in_process_webhooks(service: RunningService) -> None:
    """Stop the suite's service sending webhooks (its dispatcher hands back what it had leased)."""
    await service.app.state.runtime.stop("webhooks")


def restart_in_process_webhooks(service: RunningService) -> None:
    """Let the suite's service send webhooks again, with a dispatcher of its own settings."""
    service.app.state.runtime.start(
        "webhooks",
        WebhookDispatcher(
            settings=service.settings,
            metrics=service.app.state.webhook_metrics,
            guard=service.app.state.address_guard,
        ),
    )


@pytest.fixture(autouse=True)
async def webhooks_running_after_each_test(notifications: RunningService) -> AsyncIterator[None]:
    """A test that stopped the in-process dispatcher and failed before restarting it leaves it running again,
    so that one failure does not fail every webhook test after it."""
    yield
    runtime = notifications.app.state.runtime
    if not runtime.is_running("webhooks"):
        if "webhooks" in runtime.workers:
            await runtime.stop("webhooks")
        restart_in_process_webhooks(notifications)


async def test_webhook_is_signed_per_standard_webhooks_and_carries_the_cloudevent(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    created = await subscribe(notifications, platform, url, event_types=["feedback.*"])
    assert created["secret"].startswith("whsec_")
    customer_id = customer()
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)

    [request] = await requests_about(receiver, url, customer_id, 1)
    event = Webhook(created["secret"]).verify(request.body, request.headers)
    assert event["id"] == str(record.event_id)
    assert event["type"] == "feedback.received"
    assert event["department"] == "support"
    assert event["data"] == orjson.loads(record.value)["data"]
    assert request.headers["content-type"] == CONTENT_TYPE

    async def delivered() -> dict[str, Any] | None:
        found = [d for d in await deliveries(notifications, platform, created["id"]) if d["event_id"] == event["id"]]
        return found[0] if found and found[0]["status"] == "delivered" else None

    assert request.headers["webhook-id"] == (await eventually(delivered))["id"]


async def test_webhook_request_continues_the_trace_of_its_event(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    await subscribe(notifications, platform, url, event_types=["feedback.*"])
    customer_id = customer()
    traceparent = f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"
    token = traceparent_var.set(traceparent)
    try:
        await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    finally:
        traceparent_var.reset(token)

    [request] = await requests_about(receiver, url, customer_id, 1)
    assert request.headers["traceparent"] == traceparent
    metrics = (await notifications.client.get("/metrics")).text
    assert "cf_webhook_pending_deliveries" in metrics
    assert "cf_webhook_attempts_total" in metrics


async def test_failed_delivery_is_retried_with_the_same_webhook_id(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(500), Answer(503), Answer(204))
    created = await subscribe(notifications, platform, url, department="sales", event_types=["feedback.received"])
    customer_id = customer()
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "compliment"), customer_id=customer_id)

    requests = await requests_about(receiver, url, customer_id, 3)
    assert len({r.headers["webhook-id"] for r in requests}) == 1
    for request in requests:
        Webhook(created["secret"]).verify(request.body, request.headers)

    async def logged() -> dict[str, Any] | None:
        [delivery] = await deliveries(notifications, platform, created["id"])
        return delivery if delivery["status"] == "delivered" else None

    delivery = await eventually(logged)
    assert delivery["attempt_count"] == 3
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 503, 204]
    assert [a["error"] for a in delivery["attempts"]] == ["HTTP 500", "HTTP 503", None]
    assert all(a["duration_ms"] >= 0 for a in delivery["attempts"])


async def test_retry_after_is_honoured(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(429, headers={"Retry-After": "2"}), Answer(204))
    await subscribe(notifications, platform, url, department="production", event_types=["feedback.received"])
    customer_id = customer()
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "suggestion"), customer_id=customer_id)

    first, second = await requests_about(receiver, url, customer_id, 2)
    # The schedule alone would retry after about 0.2 seconds.
    assert second.at - first.at >= 1.9


async def test_gone_endpoint_disables_the_subscription_and_announces_it(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(410))
    created = await subscribe(notifications, platform, url, department="management")
    customer_id = customer()
    await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)

    current = await disabled(notifications, platform, created["id"])
    assert current["disabled_reason"] == "gone"
    assert len(about(customer_id, receiver.received(url))) == 1
    [delivery] = await deliveries(notifications, platform, created["id"])
    assert delivery["status"] == "failed"
    event = await announced_disabled(platform, created["id"])
    assert event["type"] == "subscription.disabled"
    assert event["data"]["id"] == created["id"]
    assert event["data"]["status"] == "disabled"
    assert event["data"]["disabled_reason"] == "gone"
    assert "secret" not in event["data"]


async def test_exhausted_schedule_disables_the_subscription(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(500))
    created = await subscribe(notifications, platform, url, department="production", event_types=["commitment.*"])
    customer_id = customer()
    await publisher.publish(catalogue.COMMITMENT_CREATED, commitment(customer_id), customer_id=customer_id)

    current = await disabled(notifications, platform, created["id"])
    assert current["disabled_reason"] == "retries_exhausted"
    # The first attempt and one retry per entry of the schedule "0.2,0.4".
    assert len(about(customer_id, receiver.received(url))) == 3
    [delivery] = await deliveries(notifications, platform, created["id"])
    assert delivery["status"] == "failed"
    assert delivery["attempt_count"] == 3
    assert delivery["next_attempt_at"] is None
    event = await announced_disabled(platform, created["id"])
    assert event["data"]["disabled_reason"] == "retries_exhausted"


async def test_manual_retry_replays_a_failed_delivery_and_reenables_the_subscription(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(500))
    created = await subscribe(notifications, platform, url, department="production", event_types=["commitment.*"])
    customer_id = customer()
    await publisher.publish(catalogue.COMMITMENT_CANCELLED, commitment(customer_id), customer_id=customer_id)
    await disabled(notifications, platform, created["id"])
    [failed] = await deliveries(notifications, platform, created["id"])

    receiver.answer(url, Answer(204))
    retried = await notifications.client.post(
        f"/v1/subscriptions/{created['id']}/deliveries/{failed['id']}/retry",
        headers=platform.auth("notifications:admin"),
    )
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "pending"

    requests = await requests_about(receiver, url, customer_id, 4)
    assert {r.headers["webhook-id"] for r in requests} == {failed["id"]}
    Webhook(created["secret"]).verify(requests[-1].body, requests[-1].headers)

    async def delivered() -> dict[str, Any] | None:
        [delivery] = await deliveries(notifications, platform, created["id"])
        return delivery if delivery["status"] == "delivered" else None

    assert (await eventually(delivered))["attempt_count"] == 4
    assert (await subscription(notifications, platform, created["id"]))["status"] == "active"


async def test_slow_endpoint_does_not_delay_another_subscription(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    slow_url = receiver.endpoint(Answer(204, delay=5))
    fast_url = receiver.endpoint()
    slow = await subscribe(notifications, platform, slow_url, event_types=["feedback.received"])
    fast = await subscribe(notifications, platform, fast_url, event_types=["feedback.received"])
    customer_id = customer()
    for _ in range(12):
        await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question"), customer_id=customer_id)

    fast_requests = await requests_about(receiver, fast_url, customer_id, 12)
    slow_requests = about(customer_id, receiver.received(slow_url))
    # The slow lane takes 4 at a time for 5 s each; the fast one had all 12 before the slow lane's first answer.
    assert 1 <= len(slow_requests) <= 4
    assert max(r.at for r in fast_requests) < slow_requests[0].at + 5
    # Deleting the subscriptions drops the slow lane's queue; its requests in flight end on their own.
    for created in (slow, fast):
        await notifications.client.delete(f"/v1/subscriptions/{created['id']}", headers=platform.auth())


async def slow_delivery_in_flight(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> tuple[str, dict[str, Any], str, Received]:
    """A subscription whose receiver takes a second to answer, and its first delivery's request, in flight:
    the url, the subscription, the customer and the request."""
    url = receiver.endpoint(Answer(204, delay=1.0))
    created = await subscribe(notifications, platform, url, department="sales", event_types=["meeting.recorded"])
    customer_id = customer()
    await publisher.publish(
        catalogue.MEETING_RECORDED, {"id": str(uuid.uuid4()), "customer_id": customer_id}, customer_id=customer_id
    )
    [in_flight] = await requests_about(receiver, url, customer_id, 1)
    return url, created, customer_id, in_flight


async def test_delivery_in_flight_when_the_worker_stops_is_sent_by_the_next_one(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url, created, customer_id, interrupted = await slow_delivery_in_flight(notifications, publisher, platform, receiver)

    await stop_in_process_webhooks(notifications)
    # Handed back to PostgreSQL, due at once.
    [waiting] = await deliveries(notifications, platform, created["id"])
    assert (waiting["status"], waiting["attempt_count"]) == ("pending", 0)

    restarted = time.monotonic()
    restart_in_process_webhooks(notifications)
    _, resent = await requests_about(receiver, url, customer_id, 2)
    assert resent.headers["webhook-id"] == interrupted.headers["webhook-id"] == waiting["id"]
    # Nothing sent it while no worker ran: its second request came from the dispatcher started after.
    assert resent.at >= restarted

    async def delivered() -> dict[str, Any] | None:
        [delivery] = await deliveries(notifications, platform, created["id"])
        return delivery if delivery["status"] == "delivered" else None

    assert (await eventually(delivered))["attempt_count"] == 1
    # A later event's request to the same receiver: a third send of the first would have come before it.
    await publisher.publish(
        catalogue.MEETING_RECORDED, {"id": str(uuid.uuid4()), "customer_id": customer_id}, customer_id=customer_id
    )
    requests = await requests_about(receiver, url, customer_id, 3)
    assert [r.headers["webhook-id"] for r in requests].count(waiting["id"]) == 2


async def test_outcome_being_written_when_the_worker_stops_is_recorded_not_lost(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    _, created, _, _ = await slow_delivery_in_flight(notifications, publisher, platform, receiver)

    # While the receiver takes its time, a transaction of ours locks the delivery, so the 204's outcome,
    # once the worker writes it, waits in PostgreSQL; the worker is stopped in the middle of that write.
    blocker = await asyncpg.connect(asyncpg_dsn(notifications.settings.database_url))
    try:
        locked = blocker.transaction()
        await locked.start()
        [row] = await blocker.fetch(
            "SELECT attempt_count FROM webhook_delivery WHERE subscription_id = $1 FOR UPDATE",
            uuid.UUID(created["id"]),
        )
        assert row["attempt_count"] == 0

        async def outcome_waits() -> bool:
            waiting: int = await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
            )
            return waiting > 0

        await eventually(outcome_waits)
        stopping = asyncio.create_task(notifications.app.state.runtime.stop("webhooks"))
        await asyncio.sleep(0.3)
        await locked.rollback()
        await stopping
    finally:
        await blocker.close()

    # Recorded as delivered, once: nothing is left leased to be sent again.
    [delivery] = await deliveries(notifications, platform, created["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("delivered", 1)
    assert [a["status_code"] for a in delivery["attempts"]] == [204]
    restart_in_process_webhooks(notifications)


async def test_endpoint_that_does_not_answer_in_time_is_retried(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(204, delay=3), Answer(204))
    created = await subscribe(notifications, platform, url, department="sales", event_types=["meeting.recorded"])
    customer_id = customer()
    await publisher.publish(
        catalogue.MEETING_RECORDED, {"id": str(uuid.uuid4()), "customer_id": customer_id}, customer_id=customer_id
    )

    async def delivered() -> dict[str, Any] | None:
        found = await deliveries(notifications, platform, created["id"])
        return found[0] if found and found[0]["status"] == "delivered" else None

    delivery = await eventually(delivered)
    assert [a["error"] for a in delivery["attempts"]] == ["timed out after 2s", None]
    assert delivery["attempts"][0]["status_code"] is None


async def test_endpoint_that_dropped_an_idle_connection_gets_the_next_delivery_at_once(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    created = await subscribe(notifications, platform, url, department="production", event_types=["commitment.*"])
    customer_id = customer()
    await publisher.publish(catalogue.COMMITMENT_CREATED, commitment(customer_id), customer_id=customer_id)
    [first] = await requests_about(receiver, url, customer_id, 1)

    async def first_connection_closed() -> bool:
        # The receiver closes connections idle for a second.
        return first.client not in receiver.open_connections()

    assert first.client is not None
    await eventually(first_connection_closed)
    await publisher.publish(catalogue.COMMITMENT_CANCELLED, commitment(customer_id), customer_id=customer_id)
    await requests_about(receiver, url, customer_id, 2)

    async def both_delivered() -> list[dict[str, Any]] | None:
        found = await deliveries(notifications, platform, created["id"])
        return found if len(found) == 2 and all(d["status"] == "delivered" for d in found) else None

    assert [d["attempt_count"] for d in await eventually(both_delivered)] == [1, 1]


async def test_subscription_receives_only_the_event_types_it_asked_for(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint()
    created = await subscribe(notifications, platform, url, department="production", event_types=["commitment.*"])
    customer_id = customer()
    suggestion = await publisher.publish(
        catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "suggestion"), customer_id=customer_id
    )
    promise = await publisher.publish(catalogue.COMMITMENT_CREATED, commitment(customer_id), customer_id=customer_id)
    await publisher.processed(suggestion)
    await publisher.processed(promise)

    assert [d["event_id"] for d in await deliveries(notifications, platform, created["id"])] == [str(promise.event_id)]


async def test_secret_is_shown_only_when_the_subscription_is_created(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    created = await subscribe(notifications, platform, receiver.endpoint(), department="sales")
    shown = await subscription(notifications, platform, created["id"])
    listed = await notifications.client.get(
        "/v1/subscriptions", params={"department": "sales"}, headers=platform.auth()
    )
    assert "secret" not in shown
    assert [s for s in listed.json()["items"] if s["id"] == created["id"]] == [shown]


async def test_same_idempotency_key_replays_the_subscription(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    body = {"department": "sales", "url": receiver.endpoint(), "event_types": []}
    headers = {**platform.auth("notifications:admin", sub=f"admin-{uuid.uuid4()}"), "Idempotency-Key": "k-1"}
    first = await notifications.client.post("/v1/subscriptions", json=body, headers=headers)
    again = await notifications.client.post("/v1/subscriptions", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == {**first.json(), "secret": None, "note": "secret_shown_once"}
    assert again.headers["Idempotent-Replayed"] == "true"


async def test_deleted_subscription_is_gone(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    created = await subscribe(notifications, platform, receiver.endpoint())
    assert (
        await notifications.client.delete(f"/v1/subscriptions/{created['id']}", headers=platform.auth())
    ).status_code == 204
    for path in (f"/v1/subscriptions/{created['id']}", f"/v1/subscriptions/{created['id']}/deliveries"):
        assert (await notifications.client.get(path, headers=platform.auth())).status_code == 404
    again = await notifications.client.delete(f"/v1/subscriptions/{created['id']}", headers=platform.auth())
    assert again.status_code == 404


async def test_department_token_manages_only_its_own_subscriptions(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    sales_admin = platform.auth("notifications:admin", "notifications:read", department="sales")
    own = await notifications.client.post(
        "/v1/subscriptions", json={"department": "sales", "url": receiver.endpoint()}, headers=sales_admin
    )
    other = await notifications.client.post(
        "/v1/subscriptions", json={"department": "support", "url": receiver.endpoint()}, headers=sales_admin
    )
    support_subscription = await subscribe(notifications, platform, receiver.endpoint(), department="support")
    listed = await notifications.client.get("/v1/subscriptions", params={"limit": 200}, headers=sales_admin)

    assert own.status_code == 201
    assert other.status_code == 403
    assert {s["department"] for s in listed.json()["items"]} == {"sales"}
    for response in (
        await notifications.client.get(f"/v1/subscriptions/{support_subscription['id']}", headers=sales_admin),
        await notifications.client.delete(f"/v1/subscriptions/{support_subscription['id']}", headers=sales_admin),
        await notifications.client.get("/v1/subscriptions", params={"department": "support"}, headers=sales_admin),
    ):
        assert response.status_code == 403, response.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"department": "legal", "url": "http://127.0.0.1:9/x"}, ["body", "department"]),
        ({"department": "sales", "url": "not a url"}, ["body", "url"]),
        ({"department": "sales", "url": "ftp://127.0.0.1/x"}, ["body", "url"]),
        (
            {"department": "sales", "url": "http://127.0.0.1:9/x", "event_types": ["invoice.*"]},
            ["body", "event_types", 0],
        ),
        (
            {"department": "sales", "url": "http://127.0.0.1:9/x", "event_types": ["feedback received"]},
            ["body", "event_types", 0],
        ),
    ],
    ids=["unknown-department", "malformed-url", "not-http", "pattern-matching-nothing", "malformed-pattern"],
)
async def test_bad_subscription_is_a_problem_naming_the_field(
    notifications: RunningService, platform: Platform, body: dict[str, Any], field: list[Any]
) -> None:
    response = await notifications.client.post("/v1/subscriptions", json=body, headers=platform.auth())
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert field in [e["loc"] for e in response.json()["errors"]]


async def test_unknown_subscription_or_delivery_is_404(
    notifications: RunningService, platform: Platform, receiver: Receiver
) -> None:
    created = await subscribe(notifications, platform, receiver.endpoint(), department="sales")
    unknown = uuid.uuid4()
    for response in (
        await notifications.client.get(f"/v1/subscriptions/{unknown}", headers=platform.auth()),
        await notifications.client.get(f"/v1/subscriptions/{unknown}/deliveries", headers=platform.auth()),
        await notifications.client.post(
            f"/v1/subscriptions/{created['id']}/deliveries/{unknown}/retry", headers=platform.auth()
        ),
    ):
        assert response.status_code == 404, response.text
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.1.2.3/hook", "http://[::1]/hook"]
)
async def test_private_or_loopback_url_is_refused_by_default(platform: Platform, url: str) -> None:
    app = create_app(notifications_settings(platform, webhook_allow_private=False, run_workers=False))
    async with serve(app) as client:
        response = await client.post(
            "/v1/subscriptions", json={"department": "sales", "url": url}, headers=platform.auth()
        )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "url"]


async def test_reading_subscriptions_needs_a_token(notifications: RunningService) -> None:
    response = await notifications.client.get("/v1/subscriptions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_read_scope_cannot_subscribe(notifications: RunningService, platform: Platform) -> None:
    response = await notifications.client.post(
        "/v1/subscriptions",
        json={"department": "sales", "url": "http://127.0.0.1:9/x"},
        headers=platform.auth("notifications:read"),
    )
    assert response.status_code == 403


# Ahead of the next test, whose routing-only app leaves the router group rebalancing for a while.
@pytest.mark.slow
async def test_deliveries_leased_by_a_killed_webhook_worker_are_sent_again_once_their_lease_expires(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    # Three requests the receiver sits on (longer than the worker would wait); what comes after is answered at once.
    url = receiver.endpoint(*[Answer(204, delay=10)] * 3, Answer(204))
    created = await subscribe(notifications, platform, url, department="sales", event_types=["meeting.recorded"])
    await stop_in_process_webhooks(notifications)
    worker = await start_webhook_worker(notifications.settings)
    try:
        customer_id = customer()
        for _ in range(3):
            await publisher.publish(
                catalogue.MEETING_RECORDED,
                {"id": str(uuid.uuid4()), "customer_id": customer_id},
                customer_id=customer_id,
            )
        interrupted = await requests_about(receiver, url, customer_id, 3, within=30)
        # Killed with its three requests in flight: nothing is handed back and no outcome is written.
        worker.kill()
        assert await asyncio.wait_for(worker.wait(), 15) == -signal.SIGKILL
    finally:
        if worker.returncode is None:
            worker.kill()
            await worker.wait()
        # Another worker runs from now on, and must leave the leased deliveries alone until their lease ends.
        restart_in_process_webhooks(notifications)

    leases = await platform.fetch(
        "notifications",
        "SELECT id, status, attempt_count, leased_until,"
        " extract(epoch FROM leased_until - clock_timestamp())::float8 AS remaining"
        " FROM webhook_delivery WHERE subscription_id = $1",
        uuid.UUID(created["id"]),
    )
    ids = {r.headers["webhook-id"] for r in interrupted}
    assert ids == {str(lease["id"]) for lease in leases}
    assert all((lease["status"], lease["attempt_count"]) == ("pending", 0) for lease in leases)
    # A lease outlasts the attempt it covers.
    assert all(lease["remaining"] > notifications.settings.webhook_timeout_seconds for lease in leases), leases
    leased_until = {str(lease["id"]): lease["leased_until"] for lease in leases}

    longest = max(lease["remaining"] for lease in leases)
    requests = await requests_about(receiver, url, customer_id, 6, within=longest + 30)
    resent = requests[3:]
    assert sorted(r.headers["webhook-id"] for r in resent) == sorted(ids)
    for request in resent:
        Webhook(created["secret"]).verify(request.body, request.headers)

    async def all_delivered() -> list[dict[str, Any]] | None:
        found = await deliveries(notifications, platform, created["id"])
        return found if len(found) == 3 and all(d["status"] == "delivered" for d in found) else None

    for delivery in await eventually(all_delivered):
        assert delivery["attempt_count"] == 1
        [attempt] = delivery["attempts"]
        assert (attempt["status_code"], attempt["error"]) == (204, None)
        # Sent again only once its lease had ended, by the moments PostgreSQL and the dispatcher recorded.
        assert datetime.fromisoformat(attempt["attempted_at"]) >= leased_until[delivery["id"]], delivery
    # A later event's request to the same receiver: a third send of any of them would have come before it.
    await publisher.publish(
        catalogue.MEETING_RECORDED, {"id": str(uuid.uuid4()), "customer_id": customer_id}, customer_id=customer_id
    )
    requests = await requests_about(receiver, url, customer_id, 7)
    assert sorted(r.headers["webhook-id"] for r in requests if r.headers["webhook-id"] in ids) == sorted([*ids, *ids])


@pytest.mark.slow
async def test_service_without_in_process_webhooks_leaves_them_to_a_webhook_worker_process(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    routing_only = create_app(notifications_settings(platform, webhooks_in_process=False))
    async with serve(routing_only):
        runtime = routing_only.state.runtime

        async def workers_started() -> bool:
            return bool(runtime.consumers)

        await eventually(workers_started)
        assert not runtime.running(WebhookDispatcher)

    # The suite's service stops sending, so only the worker process can deliver.
    await stop_in_process_webhooks(notifications)
    worker = await start_webhook_worker(notifications.settings)
    try:
        url = receiver.endpoint()
        await subscribe(notifications, platform, url, department="sales", event_types=["meeting.recorded"])
        customer_id = customer()
        record = await publisher.publish(
            catalogue.MEETING_RECORDED, {"id": str(uuid.uuid4()), "customer_id": customer_id}, customer_id=customer_id
        )
        # The group rebalances after the routing-only app left, which can take a session timeout.
        await publisher.processed(record, within=60)
        await requests_about(receiver, url, customer_id, 1)
    finally:
        worker.terminate()
        exit_code = await asyncio.wait_for(worker.wait(), 15)
        restart_in_process_webhooks(notifications)
    assert exit_code == 0
