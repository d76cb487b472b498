"""The live stream (Server-Sent Events) over a real HTTP connection: live, resume, keep-alive, many listeners."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import orjson
import pytest
from fastapi import FastAPI

from services.notifications.app import create_app
from services.notifications.stream import NotificationFeed
from shared import catalogue
from shared.events import build_event
from shared.observability import Metrics
from tests.notifications.conftest import RunningService, notifications_settings
from tests.notifications.helpers import EventPublisher, StreamEvent, customer, feedback, read_stream
from tests.support.local_server import LocalServer
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


@contextlib.asynccontextmanager
async def stream(
    base_url: str, platform: Platform, department: str, *, last_event_id: str | None = None, sub: str = "tester"
) -> AsyncIterator[AsyncIterator[StreamEvent]]:
    headers = platform.auth("notifications:read", sub=sub)
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    async with (
        httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", f"/v1/departments/{department}/stream", headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        yield read_stream(response)


def feed_queries(app: FastAPI) -> float:
    return feed_reads(app.state.metrics)


def feed_reads(metrics: Metrics) -> float:
    return metrics.registry.get_sample_value("cf_stream_feed_queries_total") or 0.0


async def events_about(events: AsyncIterator[StreamEvent], customer_id: str, count: int) -> list[dict[str, object]]:
    """The next `count` events about `customer_id` (other tests' events and pings are skipped)."""
    found: list[dict[str, object]] = []

    async def collect() -> None:
        async for event in events:
            if event.data is None:
                continue
            body = orjson.loads(event.data)
            assert event.id == body["id"]
            if body["customerid"] == customer_id:
                found.append(body)
                if len(found) == count:
                    return

    await asyncio.wait_for(collect(), 15)
    return found


async def test_stream_sends_each_new_notification_with_its_event_id(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    async with stream(notifications.server.base_url, platform, "support") as events:
        record = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
        [event] = await events_about(events, customer_id, 1)
    assert event["id"] == str(record.event_id)
    assert event["type"] == "feedback.received"
    assert event["department"] == "support"


async def test_stream_resumes_after_the_last_event_id(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    async with stream(notifications.server.base_url, platform, "support") as events:
        first = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
        await events_about(events, customer_id, 1)
    missed = [
        await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "question"), customer_id=customer_id)
        for _ in range(3)
    ]
    for record in missed:
        await publisher.processed(record)

    async with stream(notifications.server.base_url, platform, "support", last_event_id=str(first.event_id)) as events:
        later = await publisher.publish(catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id)
        resumed = await events_about(events, customer_id, 4)
    assert [e["id"] for e in resumed] == [str(r.event_id) for r in [*missed, later]]


async def test_stream_sends_keep_alive_pings(notifications: RunningService, platform: Platform) -> None:
    async with stream(notifications.server.base_url, platform, "production") as events:
        comment = await asyncio.wait_for(anext(e.comment async for e in events if e.comment), 5)
    assert comment.startswith("ping")


async def test_many_listeners_share_one_feed(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    customer_id = customer()
    listeners = 25  # each its own `sub`: one holds at most CF_SSE_MAX_STREAMS_PER_SUBJECT (10) streams
    async with contextlib.AsyncExitStack() as stack:
        streams = [
            await stack.enter_async_context(stream(notifications.server.base_url, platform, "sales", sub=f"l-{n}"))
            for n in range(listeners)
        ]
        queries_before = feed_queries(notifications.app)
        record = await publisher.publish(
            catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "compliment"), customer_id=customer_id
        )
        received = await asyncio.gather(*(events_about(events, customer_id, 1) for events in streams))
        queries = feed_queries(notifications.app) - queries_before
    assert [[e["id"] for e in got] for got in received] == [[str(record.event_id)]] * listeners
    assert queries < listeners


@pytest.mark.usefixtures("notifications")
async def test_listener_that_falls_behind_catches_up_from_the_database(
    publisher: EventPublisher, platform: Platform
) -> None:
    # A second replica that only serves streams, with room for one queued event per listener: a burst
    # routed by the module's service overflows it, and the listener must fetch the rest itself.
    replica = create_app(notifications_settings(platform, run_workers=False, sse_queue_size=1))
    customer_id = customer()
    async with serve(replica):
        server = LocalServer(replica)
        await server.start()
        try:
            async with stream(server.base_url, platform, "support") as events:
                records = [
                    build_event(catalogue.FEEDBACK_RECEIVED, data=data, subject=data["id"], customer_id=customer_id)
                    for data in (feedback(customer_id, "question") for _ in range(20))
                ]
                await publisher.send_all(records)
                received = await events_about(events, customer_id, 20)
        finally:
            await server.stop()
    assert [e["id"] for e in received] == [str(r.event_id) for r in records]
    assert (replica.state.metrics.registry.get_sample_value("cf_stream_catch_up_reads_total") or 0) >= 1


async def test_stream_with_an_unknown_last_event_id_is_a_problem(
    notifications: RunningService, platform: Platform
) -> None:
    for last_event_id in ("not-an-id", "6f1c55a4-0000-4000-8000-000000000000"):
        response = await notifications.client.get(
            "/v1/departments/support/stream", headers={**platform.auth(), "Last-Event-ID": last_event_id}
        )
        assert response.status_code == 422
        assert response.json()["errors"][0]["loc"] == ["header", "Last-Event-ID"]


async def test_stream_of_another_department_is_forbidden(notifications: RunningService, platform: Platform) -> None:
    response = await notifications.client.get(
        "/v1/departments/sales/stream", headers=platform.auth("notifications:read", department="support")
    )
    assert response.status_code == 403


async def test_a_stream_that_starts_while_the_feed_moves_on_alone_misses_nothing(platform: Platform) -> None:
    # A feed with nobody listening only moves its position on. A stream that subscribes while it reads the
    # new position starts from the old one, so the rows in between are the stream's (they were lost once,
    # in the crash test, by a follower reconnecting to a restarted service).
    dsn = platform.dsn("notifications")
    name = f"feed-{uuid.uuid4().hex[:8]}"  # this feed's connection, among the module service's
    separator = "&" if "?" in dsn else "?"
    feed = NotificationFeed(dsn=f"{dsn}{separator}application_name={name}", queue_size=100, metrics=Metrics(name))
    following = asyncio.create_task(feed.run())
    holder = await asyncpg.connect(dsn)
    try:
        await asyncio.wait_for(feed.ready.wait(), 15)
        async with holder.transaction():
            # Every read of the table waits behind this lock until the new row commits with it.
            await holder.execute("LOCK TABLE notification IN ACCESS EXCLUSIVE MODE")
            event_id = uuid.uuid4()
            await holder.execute(
                "INSERT INTO notification (id, event_id, department, event_type, customer_id, value) "
                "VALUES ($1, $2, 'support', 'feedback.received', $3, $4)",
                uuid.uuid4(),
                event_id,
                customer(),
                b"{}",
            )

            async def feed_waits_for_the_table() -> bool:
                waiting = await holder.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
                    name,
                )
                return bool(waiting)

            # The feed's next sweep (at most a second away) reads its new position, and waits for the lock.
            await eventually(feed_waits_for_the_table, within=30.0)
            listener = feed.subscribe("support")
        seen: list[uuid.UUID] = []

        async def the_new_row() -> None:
            while event_id not in seen:
                seen.append((await listener.next()).event_id)

        await asyncio.wait_for(the_new_row(), 15)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await holder.close()


async def test_a_transaction_open_in_another_database_does_not_hold_the_stream_back(
    notifications: RunningService, publisher: EventPublisher, platform: Platform
) -> None:
    # Transaction ids belong to the whole cluster, which the services' databases share: a long batch in
    # the commitments database once held every notification back until it committed.
    other = await asyncpg.connect(platform.dsn("commitments"))
    try:
        async with other.transaction():
            await other.fetchval("SELECT pg_current_xact_id()")
            customer_id = customer()
            async with stream(notifications.server.base_url, platform, "support") as events:
                record = await publisher.publish(
                    catalogue.FEEDBACK_RECEIVED, feedback(customer_id), customer_id=customer_id
                )
                [event] = await events_about(events, customer_id, 1)
            still_open = await platform.fetch(
                "notifications",
                "SELECT count(*) AS n FROM pg_stat_activity WHERE backend_xid IS NOT NULL AND pid = $1",
                other.get_server_pid(),
            )
    finally:
        await other.close()
    assert event["id"] == str(record.event_id)
    assert still_open[0]["n"] == 1


async def test_a_notification_committed_late_holds_later_ones_back_and_comes_first(platform: Platform) -> None:
    dsn = platform.dsn("notifications")
    metrics = Metrics(f"feed-{uuid.uuid4().hex[:8]}")
    feed = NotificationFeed(dsn=dsn, queue_size=100, metrics=metrics)
    following = asyncio.create_task(feed.run())
    late, early = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    insert = (
        "INSERT INTO notification (id, event_id, department, event_type, customer_id, value) "
        "VALUES ($1, $2, 'support', 'feedback.received', $3, $4)"
    )
    try:
        await asyncio.wait_for(feed.ready.wait(), 15)
        listener = feed.subscribe("support")
        late_id, later_id = uuid.uuid4(), uuid.uuid4()
        async with late.transaction():
            # The late row takes the older transaction id; the later row commits first.
            await late.execute(insert, uuid.uuid4(), late_id, customer(), b"{}")
            await early.execute(insert, uuid.uuid4(), later_id, customer(), b"{}")
            # Two reads begun after the later row committed: had the feed handed it out, it would come first.
            read_before = feed_reads(metrics)

            async def the_feed_read_twice_since() -> bool:
                return feed_reads(metrics) >= read_before + 2

            await eventually(the_feed_read_twice_since)
        seen: list[uuid.UUID] = []

        async def both() -> None:
            while later_id not in seen:
                event_id = (await listener.next()).event_id
                if event_id in (late_id, later_id):
                    seen.append(event_id)

        await asyncio.wait_for(both(), 15)
    finally:
        following.cancel()
        await asyncio.gather(following, return_exceptions=True)
        await late.close()
        await early.close()
    assert seen == [late_id, later_id]
