"""Webhook deliveries end to end (issue 14): refused addresses, odd answers, leases between workers, enable
and recover; against the suite's service, real receivers, PostgreSQL and the broker."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from services.notifications.webhooks.dispatcher import WebhookDispatcher, WebhookMetrics
from services.notifications.webhooks.guard import AddressGuard
from shared import catalogue
from shared.observability import Metrics
from tests.notifications.conftest import RunningService, notifications_settings
from tests.notifications.helpers import Answer, EventPublisher, Receiver, commitment, customer, feedback
from tests.notifications.test_webhooks import (
    about,
    deliveries,
    requests_about,
    restart_in_process_webhooks,
    stop_in_process_webhooks,
    subscribe,
    subscription,
)
from tests.support.platform import Platform
from tests.support.waiting import eventually

_running: list[asyncio.Task[None]] = []


@contextlib.asynccontextmanager
async def dispatchers(
    notifications: RunningService, platform: Platform, count: int, **overrides: Any
) -> AsyncIterator[list[WebhookDispatcher]]:
    """`count` dispatchers of their own settings in place of the suite's in-process one (each runs once
    `start`ed, and stops, handing back its leases, when the block ends)."""
    settings = notifications_settings(platform, **overrides)
    created = [
        WebhookDispatcher(
            settings=settings,
            metrics=WebhookMetrics(Metrics("notifications")),
            guard=AddressGuard(allow_private=settings.webhook_allow_private),
        )
        for _ in range(count)
    ]
    await stop_in_process_webhooks(notifications)
    try:
        yield created
    finally:
        stopping, _running[:] = list(_running), []
        for task in stopping:
            task.cancel()
        await asyncio.gather(*stopping, return_exceptions=True)
        restart_in_process_webhooks(notifications)


def start(dispatcher: WebhookDispatcher) -> None:
    _running.append(asyncio.create_task(dispatcher.run()))


async def publish_complaint(publisher: EventPublisher, customer_id: str) -> uuid.UUID:
    record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
    return record.event_id


async def leases(platform: Platform, subscription_id: str) -> list[Any]:
    return await platform.fetch(
        "notifications",
        "SELECT id, status, lease_token, attempt_count FROM webhook_delivery WHERE subscription_id = $1",
        uuid.UUID(subscription_id),
    )


async def settled(
    service: RunningService, platform: Platform, subscription_id: str, count: int
) -> list[dict[str, Any]]:
    async def check() -> list[dict[str, Any]] | None:
        found = await deliveries(service, platform, subscription_id)
        done = [d for d in found if d["status"] != "pending" and d["attempts"]]
        return found if len(found) == count and len(done) == count else None

    return await eventually(check, within=30)


async def test_private_addresses_in_every_form_are_refused_and_the_log_says_only_that(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    port = receiver.port
    # Accepted by the suite's service (it allows private addresses), refused by a dispatcher that does not.
    hosts = ("localhost", "127.0.0.1", "[::ffff:7f00:1]", "[::7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::]")
    urls = [f"http://{host}:{port}/hooks/{uuid.uuid4().hex}" for host in hosts]
    async with dispatchers(notifications, platform, 1, webhook_allow_private=False, webhook_retry_schedule="") as (
        dispatcher,
    ):
        created = [await subscribe(notifications, platform, url, department="support") for url in urls]
        start(dispatcher)
        await publish_complaint(publisher, customer())
        for sub in created:
            [delivery] = await settled(notifications, platform, sub["id"], 1)
            assert delivery["status"] == "failed"
            assert [(a["status_code"], a["error"]) for a in delivery["attempts"]] == [
                (None, "refused: private address")
            ]
    assert all(receiver.received(url) == [] for url in urls)


async def test_failed_connections_say_only_connection_failed(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    closed = await asyncio.start_server(lambda _reader, _writer: None, "127.0.0.1", 0)
    port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    urls = [f"http://127.0.0.1:{port}/hook", f"http://does-not-resolve.invalid:{port}/hook"]
    async with dispatchers(notifications, platform, 1, webhook_retry_schedule="") as (dispatcher,):
        created = [await subscribe(notifications, platform, url, department="support") for url in urls]
        start(dispatcher)
        await publish_complaint(publisher, customer())
        for sub in created:
            [delivery] = await settled(notifications, platform, sub["id"], 1)
            assert [a["error"] for a in delivery["attempts"]] == ["connection failed"]


async def test_2xx_with_a_retry_after_that_is_no_number_is_delivered(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    url = receiver.endpoint(Answer(200, headers={"Retry-After": "²"}))
    created = await subscribe(notifications, platform, url, department="support", event_types=["feedback.*"])
    await publish_complaint(publisher, customer())
    [delivery] = await settled(notifications, platform, created["id"], 1)
    assert (delivery["status"], delivery["attempt_count"]) == ("delivered", 1)


async def test_lease_that_ran_out_while_waiting_for_its_lane_is_not_sent_by_its_first_worker(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    # The first request is held for 3 s; with a lane of one, the second waits behind it in worker A.
    url = receiver.endpoint(Answer(204, delay=3), Answer(204))
    async with dispatchers(
        notifications, platform, 2, webhook_concurrency_per_subscription=1, webhook_timeout_seconds=10
    ) as (
        first,
        second,
    ):
        created = await subscribe(notifications, platform, url, department="support", event_types=["feedback.*"])
        start(first)
        customer_id = customer()
        for _ in range(2):
            await publish_complaint(publisher, customer_id)
        [in_flight] = await requests_about(receiver, url, customer_id, 1)

        async def both_leased() -> list[Any] | None:
            rows = await leases(platform, created["id"])
            return rows if len(rows) == 2 and all(r["lease_token"] for r in rows) else None

        waiting = next(
            r["id"] for r in await eventually(both_leased) if str(r["id"]) != in_flight.headers["webhook-id"]
        )
        # Its lease runs out (as if A had stalled) and worker B takes it over and sends it.
        await platform.fetch(
            "notifications", "UPDATE webhook_delivery SET leased_until = now() WHERE id = $1 RETURNING id", waiting
        )
        start(second)
        requests = await requests_about(receiver, url, customer_id, 2)
        assert requests[1].headers["webhook-id"] == str(waiting)

        # Once its lane is free A finds the lease is no longer its own and sends nothing.
        async def a_gave_up() -> bool:
            return first.leases_lost == 1

        await eventually(a_gave_up, within=30)
        found = await settled(notifications, platform, created["id"], 2)
    assert [d["attempt_count"] for d in found] == [1, 1]
    assert all(d["status"] == "delivered" for d in found)
    assert len(about(customer_id, receiver.received(url))) == 2


async def test_late_outcome_of_a_lost_lease_never_overwrites_delivered(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    # A's request gets a 500 after 3 s; meanwhile its lease is taken over by B, whose request is delivered.
    url = receiver.endpoint(Answer(500, delay=3), Answer(204))
    async with dispatchers(notifications, platform, 2, webhook_timeout_seconds=10) as (first, second):
        created = await subscribe(notifications, platform, url, department="support", event_types=["feedback.*"])
        start(first)
        customer_id = customer()
        await publish_complaint(publisher, customer_id)
        [in_flight] = await requests_about(receiver, url, customer_id, 1)
        await platform.fetch(
            "notifications",
            "UPDATE webhook_delivery SET leased_until = now() WHERE id = $1 RETURNING id",
            uuid.UUID(in_flight.headers["webhook-id"]),
        )
        start(second)
        await requests_about(receiver, url, customer_id, 2)

        async def a_outcome_refused() -> bool:
            return first.stale_outcomes == 1

        await eventually(a_outcome_refused, within=30)
        [delivery] = await deliveries(notifications, platform, created["id"])
    assert (delivery["status"], delivery["attempt_count"]) == ("delivered", 1)
    assert [a["status_code"] for a in delivery["attempts"]] == [204]


async def test_enable_and_recover_deliver_each_missed_notification_once(
    notifications: RunningService, publisher: EventPublisher, platform: Platform, receiver: Receiver
) -> None:
    admin = platform.auth("notifications:admin", "notifications:read")
    url = receiver.endpoint(Answer(410))
    created = await subscribe(notifications, platform, url, department="support", event_types=["feedback.*"])
    [since] = await platform.fetch("notifications", "SELECT clock_timestamp() AS now")
    customer_id = customer()
    first = await publish_complaint(publisher, customer_id)
    assert (await eventually(lambda: _disabled(notifications, platform, created["id"])))["disabled_reason"] == "gone"
    # Routed while it is disabled: no delivery for it.
    missed = [await publish_complaint(publisher, customer_id) for _ in range(2)]
    other_type = await publisher.publish(
        catalogue.COMMITMENT_CREATED, commitment(customer_id, "support"), customer_id=customer_id
    )
    await publisher.processed(other_type)
    receiver.answer(url, Answer(204))

    enabled = await notifications.client.post(f"/v1/subscriptions/{created['id']}/enable", headers=admin)
    assert enabled.status_code == 200, enabled.text
    assert (enabled.json()["status"], enabled.json()["disabled_reason"]) == ("active", None)
    body = {"since": since["now"].isoformat()}
    recovered = await notifications.client.post(f"/v1/subscriptions/{created['id']}/recover", json=body, headers=admin)
    again = await notifications.client.post(f"/v1/subscriptions/{created['id']}/recover", json=body, headers=admin)
    assert recovered.status_code == 202, recovered.text
    assert (recovered.json()["queued"], again.json()["queued"]) == (3, 0)

    # A later event is the marker: once it is delivered, anything queued twice would have been sent too.
    marker = await publish_complaint(publisher, customer_id)
    found = await settled(notifications, platform, created["id"], 4)
    assert all(d["status"] == "delivered" for d in found)
    sent = [r.headers["webhook-id"] for r in about(customer_id, receiver.received(url))]
    by_event = {d["event_id"]: d for d in found}
    assert set(by_event) == {str(e) for e in (first, *missed, marker)}
    # The one it failed keeps its webhook-id: two requests (the 410 and the recovery); the others one each.
    assert sorted(sent.count(by_event[str(e)]["id"]) for e in (first, *missed, marker)) == [1, 1, 1, 2]


async def _disabled(service: RunningService, platform: Platform, subscription_id: str) -> dict[str, Any] | None:
    current = await subscription(service, platform, subscription_id)
    return current if current["status"] == "disabled" else None


@pytest.mark.parametrize("action", ["enable", "recover"])
async def test_enable_and_recover_need_the_admin_scope_and_the_subscriptions_department(
    notifications: RunningService, platform: Platform, receiver: Receiver, action: str
) -> None:
    created = await subscribe(notifications, platform, receiver.endpoint(), department="support")
    path = f"/v1/subscriptions/{created['id']}/{action}"
    body = {"since": "2026-01-01T00:00:00Z"}
    for headers in (
        platform.auth("notifications:admin", department="sales"),
        platform.auth("notifications:read"),
    ):
        response = await notifications.client.post(path, json=body, headers=headers)
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
    unknown = await notifications.client.post(
        f"/v1/subscriptions/{uuid.uuid4()}/{action}", json=body, headers=platform.auth()
    )
    assert unknown.status_code == 404
    own = await notifications.client.post(
        path, json=body, headers=platform.auth("notifications:admin", department="support")
    )
    assert own.status_code == (200 if action == "enable" else 202), own.text


@pytest.mark.parametrize("since", ["2026-01-01T00:00:00", "yesterday", "0001-01-01T00:00:00+23:59"])
async def test_recover_needs_a_moment_with_a_time_zone(
    notifications: RunningService, platform: Platform, receiver: Receiver, since: str
) -> None:
    created = await subscribe(notifications, platform, receiver.endpoint(), department="support")
    response = await notifications.client.post(
        f"/v1/subscriptions/{created['id']}/recover", json={"since": since}, headers=platform.auth()
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ["body", "since"] in [e["loc"] for e in response.json()["errors"]]


async def test_enable_and_recover_are_documented(notifications: RunningService) -> None:
    paths = (await notifications.client.get("/openapi.json")).json()["paths"]
    assert "202" in paths["/v1/subscriptions/{subscription_id}/recover"]["post"]["responses"]
    assert "200" in paths["/v1/subscriptions/{subscription_id}/enable"]["post"]["responses"]
