"""The purge job deletes only what has aged past its setting, counts it, and outlives a failing statement."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.notifications.repository import purges
from shared.observability import Metrics
from shared.purge import Purge, Purger, platform_purges
from tests.support.platform import Platform, serve, sessions_on
from tests.support.waiting import eventually


@pytest_asyncio.fixture
async def sessionmaker(platform: Platform) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    # The notifications database holds the platform's tables and the notifications' own.
    async with sessions_on(platform.database_urls["notifications"]) as made:
        yield made


def purger(
    sessionmaker: async_sessionmaker[AsyncSession],
    metrics: Metrics,
    purging: list[Purge],
    *,
    interval: float = 3600.0,
) -> Purger:
    return Purger(sessionmaker=sessionmaker, metrics=metrics, purges=purging, interval=interval, batch_size=2)


def purged_metric(metrics: Metrics, table: str) -> float | None:
    return metrics.registry.get_sample_value("cf_purged_rows_total", {"table": table})


async def remaining(platform: Platform, sql: str, ids: list[str]) -> set[str]:
    return {str(row[0]) for row in await platform.fetch("notifications", sql, ids)}


async def test_rows_past_their_age_are_purged_and_younger_ones_kept(
    platform: Platform, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    settings = platform.settings("notifications")  # idempotency keys 24 h, processed events and dead events 30 days
    tag = uuid.uuid4().hex[:12]
    old_events = [f"old-{tag}-{n}" for n in range(5)]  # more than a batch of 2: purged over several transactions
    young_event = f"young-{tag}"
    for event_id, age in [
        *((event_id, timedelta(days=31)) for event_id in old_events),
        (young_event, timedelta(days=29)),
    ]:
        await platform.fetch(
            "notifications",
            "INSERT INTO processed_event (consumer, event_id, processed_at) VALUES ('test', $1, now() - $2::interval)",
            event_id,
            age,
        )
    for key, age in [(f"old-{tag}", timedelta(hours=25)), (f"young-{tag}", timedelta(hours=23))]:
        await platform.fetch(
            "notifications",
            "INSERT INTO idempotency_key (sub, key, route, fingerprint, status_code, response_body, created_at) "
            "VALUES ('purge-test', $1, 'POST /x', 'f', 201, '\\x7b7d', now() - $2::interval)",
            key,
            age,
        )
    dead = {age: uuid.uuid4() for age in (timedelta(days=31), timedelta(days=1))}
    for age, dead_id in dead.items():
        await platform.fetch(
            "notifications",
            "INSERT INTO outbox_dead_event (outbox_id, event_id, topic, key, event_type, value, created_at, failed_at,"
            " reason) VALUES (0, $1, 't', 'k', 'x', '\\x7b7d', now() - $2::interval, now() - $2::interval, 'test')",
            dead_id,
            age,
        )
    metrics = Metrics("test")

    purged = await purger(sessionmaker, metrics, platform_purges(settings)).purge_once()

    processed = "SELECT event_id FROM processed_event WHERE consumer = 'test' AND event_id = ANY($1::text[])"
    assert await remaining(platform, processed, [*old_events, young_event]) == {young_event}
    keys = "SELECT key FROM idempotency_key WHERE sub = 'purge-test' AND key = ANY($1::text[])"
    assert await remaining(platform, keys, [f"old-{tag}", f"young-{tag}"]) == {f"young-{tag}"}
    dead_events = "SELECT event_id FROM outbox_dead_event WHERE event_id = ANY($1::uuid[])"
    assert await remaining(platform, dead_events, [str(i) for i in dead.values()]) == {str(dead[timedelta(days=1)])}
    assert purged["processed_event"] >= len(old_events)
    assert purged["idempotency_key"] >= 1
    assert purged["outbox_dead_event"] >= 1
    for table, count in purged.items():
        assert purged_metric(metrics, table) == count


async def test_unread_notifications_and_unsettled_deliveries_are_kept_whatever_their_age(
    platform: Platform, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    subscription = uuid.uuid4()
    await platform.fetch(
        "notifications",
        "INSERT INTO subscription (id, department, url, event_types, secret, status, created_by)"
        " VALUES ($1, 'support', 'https://example.com/hook', '{}', 'sealed', 'disabled', 'purge-test')",
        subscription,
    )
    notifications: dict[str, uuid.UUID] = {}

    async def notification(name: str, *, created: timedelta, read: timedelta | None) -> None:
        notifications[name] = uuid.uuid4()
        await platform.fetch(
            "notifications",
            "INSERT INTO notification (id, event_id, department, event_type, customer_id, value, created_at, read_at)"
            " VALUES ($1, $2, 'support', 'feedback.received', 'purge-test', '\\x7b7d', now() - $3::interval,"
            " now() - $4::interval)",
            notifications[name],
            uuid.uuid4(),
            created,
            read,
        )

    await notification("unread, very old", created=timedelta(days=400), read=None)
    await notification("read long ago", created=timedelta(days=120), read=timedelta(days=91))
    await notification("read lately", created=timedelta(days=120), read=timedelta(days=89))
    await notification("read long ago, delivery pending", created=timedelta(days=120), read=timedelta(days=91))
    await notification("read long ago, delivered long ago", created=timedelta(days=120), read=timedelta(days=91))
    await notification("read long ago, failed lately", created=timedelta(days=120), read=timedelta(days=91))
    deliveries: dict[str, uuid.UUID] = {}
    for name, status, settled in [
        ("read long ago, delivery pending", "pending", timedelta(days=40)),
        ("read long ago, delivered long ago", "delivered", timedelta(days=31)),
        ("read long ago, failed lately", "failed", timedelta(days=29)),
    ]:
        deliveries[name] = uuid.uuid4()
        await platform.fetch(
            "notifications",
            "INSERT INTO webhook_delivery (id, subscription_id, notification_id, event_id, event_type, status,"
            " next_attempt_at, created_at, updated_at) VALUES ($1, $2, $3, $4, 'feedback.received', $5,"
            " now() + interval '1 day', now() - $6::interval, now() - $6::interval)",
            deliveries[name],
            subscription,
            notifications[name],
            uuid.uuid4(),
            status,
            settled,
        )
        await platform.fetch(
            "notifications",
            "INSERT INTO delivery_attempt (delivery_id, attempted_at, status_code, duration_ms)"
            " VALUES ($1, now() - $2::interval, 500, 1.0)",
            deliveries[name],
            settled,
        )
    failed_long_ago = uuid.uuid4()
    await platform.fetch(
        "notifications",
        "INSERT INTO webhook_delivery (id, subscription_id, notification_id, event_id, event_type, status,"
        " created_at, updated_at) VALUES ($1, $2, $3, $4, 'feedback.received', 'failed',"
        " now() - interval '40 days', now() - interval '40 days')",
        failed_long_ago,
        subscription,
        notifications["unread, very old"],
        uuid.uuid4(),
    )
    metrics = Metrics("test")

    purged = await purger(
        sessionmaker, metrics, purges(read_notification_days=90, webhook_delivery_days=30)
    ).purge_once()

    left = "SELECT id FROM notification WHERE id = ANY($1::uuid[])"
    assert await remaining(platform, left, [str(i) for i in notifications.values()]) == {
        str(notifications[name])
        for name in (
            "unread, very old",
            "read lately",
            "read long ago, delivery pending",
            # Its delivery failed 29 days ago and can still be retried: the notification waits for it.
            "read long ago, failed lately",
        )
    }
    every_delivery = [str(i) for i in (*deliveries.values(), failed_long_ago)]
    kept = {str(deliveries["read long ago, delivery pending"]), str(deliveries["read long ago, failed lately"])}
    assert (
        await remaining(platform, "SELECT id FROM webhook_delivery WHERE id = ANY($1::uuid[])", every_delivery) == kept
    )
    attempts = "SELECT delivery_id FROM delivery_attempt WHERE delivery_id = ANY($1::uuid[])"
    assert await remaining(platform, attempts, every_delivery) == kept
    assert purged["webhook_delivery"] >= 2
    assert purged["notification"] >= 2
    assert purged_metric(metrics, "webhook_delivery") == purged["webhook_delivery"]
    assert purged_metric(metrics, "notification") == purged["notification"]


async def test_a_failing_purge_is_logged_the_others_go_on_and_it_is_tried_again_next_round(
    platform: Platform, sessionmaker: async_sessionmaker[AsyncSession], caplog: pytest.LogCaptureFixture
) -> None:
    table = f"purge_probe_{uuid.uuid4().hex[:12]}"  # not there yet: every statement on it fails
    key = f"old-{uuid.uuid4().hex[:12]}"
    await platform.fetch(
        "notifications",
        "INSERT INTO idempotency_key (sub, key, route, fingerprint, status_code, response_body, created_at) "
        "VALUES ('purge-test', $1, 'POST /x', 'f', 201, '\\x7b7d', now() - interval '25 hours')",
        key,
    )
    ages = [
        Purge(table, aged_by="created_at", after=timedelta(days=1)),
        Purge("idempotency_key", "created_at", timedelta(hours=24)),
    ]
    metrics = Metrics("test")
    running = asyncio.create_task(purger(sessionmaker, metrics, ages, interval=0.05).run())
    try:
        with caplog.at_level(logging.WARNING, logger="shared.purge"):

            async def failure_logged() -> bool:
                return any(f"purging {table} failed" in record.getMessage() for record in caplog.records)

            await eventually(failure_logged)

        async def key_purged() -> bool:
            return not await platform.fetch("notifications", "SELECT 1 FROM idempotency_key WHERE key = $1", key)

        await eventually(key_purged)
        await platform.fetch("notifications", f"CREATE TABLE {table} (created_at timestamptz)")
        await platform.fetch("notifications", f"INSERT INTO {table} VALUES (now() - interval '2 days'), (now())")

        async def probe_purged() -> bool:
            return purged_metric(metrics, table) == 1

        await eventually(probe_purged)
        assert len(await platform.fetch("notifications", f"SELECT 1 FROM {table}")) == 1
        assert not running.done()
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        await platform.fetch("notifications", f"DROP TABLE IF EXISTS {table}")


@pytest.mark.parametrize("service", ["feedback", "expectations", "commitments", "notifications"])
async def test_every_service_runs_its_purge_worker_and_exports_what_it_purged(platform: Platform, service: str) -> None:
    app = importlib.import_module(f"services.{service}.app").create_app(platform.settings(service))
    async with serve(app) as client:

        async def purging() -> bool:
            return bool(app.state.runtime.is_running("purge"))

        await eventually(purging)
        exported = (await client.get("/metrics")).text
        tables = ["idempotency_key", "processed_event", "outbox_dead_event"]
        if service == "notifications":
            tables += ["webhook_delivery", "notification"]
        for table in tables:
            assert f'cf_purged_rows_total{{table="{table}"}}' in exported
