"""The router keeps the rules and subscriptions between batches: every change still reaches the next batch,
and a batch that owes no webhook delivery does not wake the webhook workers.

The router's batch handler runs here as the consumer runs it (one transaction per batch), on a database of
its own: the package's service and its webhook workers share the suite's, and its NOTIFYs are per database.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from ops.platform import migrations_of
from services.notifications.config import Settings
from services.notifications.routing import EventRouter
from shared import catalogue
from shared.consumer import ConsumedEvent
from shared.db import asyncpg_dsn
from shared.events import build_event, parse_event
from shared.migrations import upgrade
from shared.unit_of_work import unit_of_work
from tests.notifications.helpers import customer, feedback
from tests.support.migrations import empty_database
from tests.support.platform import Platform, sessions_on

PASSIVE = {"scale": "nps", "value": 7}  # no default rule routes a passive score


@pytest.fixture(scope="module")
def database_url(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "notifications") as url:
        upgrade(migrations_of("notifications"), url)
        yield url


@pytest_asyncio.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions_on(database_url) as made:
        yield made


@pytest.fixture
def router(platform: Platform, database_url: str) -> EventRouter:
    settings = platform.settings("notifications", database_url=database_url)
    assert isinstance(settings, Settings)
    return EventRouter(settings)


def event(spec: catalogue.EventSpec, data: dict[str, Any]) -> ConsumedEvent:
    record = build_event(spec, data=data, subject=data["id"], customer_id=data["customer_id"])
    return ConsumedEvent(parse_event(record.value), spec.topic, 0, 0)


async def route(sessions: async_sessionmaker[AsyncSession], router: EventRouter, *events: ConsumedEvent) -> None:
    async with unit_of_work(sessions) as session:
        await router.route(session, list(events))


async def execute(sessions: async_sessionmaker[AsyncSession], sql: str, **parameters: Any) -> None:
    async with unit_of_work(sessions) as session:
        await session.execute(text(sql), parameters)


async def fetch(sessions: async_sessionmaker[AsyncSession], sql: str, **parameters: Any) -> list[Any]:
    async with unit_of_work(sessions) as session:
        return list((await session.execute(text(sql), parameters)).all())


async def departments_of(sessions: async_sessionmaker[AsyncSession], routed: ConsumedEvent) -> set[str]:
    rows = await fetch(sessions, "SELECT department FROM notification WHERE event_id = :id", id=uuid.UUID(routed.id))
    return {row.department for row in rows}


async def deliveries_of(sessions: async_sessionmaker[AsyncSession], routed: ConsumedEvent) -> set[uuid.UUID]:
    rows = await fetch(
        sessions, "SELECT subscription_id FROM webhook_delivery WHERE event_id = :id", id=uuid.UUID(routed.id)
    )
    return {row.subscription_id for row in rows}


async def subscribe(sessions: async_sessionmaker[AsyncSession], department: str) -> uuid.UUID:
    subscription_id = uuid.uuid4()
    await execute(
        sessions,
        "INSERT INTO subscription (id, department, url, event_types, secret, created_by) "
        "VALUES (:id, :department, 'https://hooks.example.com/in', '{}', 'whsec_dGVzdA==', 'tester')",
        id=subscription_id,
        department=department,
    )
    return subscription_id


async def test_a_rule_changed_between_batches_routes_the_next_batch(
    sessions: async_sessionmaker[AsyncSession], router: EventRouter
) -> None:
    customer_id = customer()
    [(rule_id,)] = await fetch(
        sessions,
        "INSERT INTO routing_rule (id, name, event_types, condition, departments) "
        "VALUES (gen_random_uuid(), :name, '{feedback.*}', CAST(:condition AS jsonb), '{sales}') RETURNING id",
        name=f"Everything about {customer_id}",
        condition=f'{{"field": "customer_id", "op": "eq", "value": "{customer_id}"}}',
    )
    first = event(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=PASSIVE))
    await route(sessions, router, first)
    assert await departments_of(sessions, first) == {"sales"}

    # Changed by hand, its updated_at left as it was: the router still sees that the rule is another.
    await execute(sessions, "UPDATE routing_rule SET departments = '{production}' WHERE id = :id", id=rule_id)
    second = event(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=PASSIVE))
    await route(sessions, router, second)
    assert await departments_of(sessions, second) == {"production"}

    await execute(sessions, "UPDATE routing_rule SET enabled = false WHERE id = :id", id=rule_id)
    third = event(catalogue.FEEDBACK_RECEIVED, feedback(customer_id, "survey_response", rating=PASSIVE))
    await route(sessions, router, third)
    assert await departments_of(sessions, third) == set()


async def test_a_subscription_made_or_disabled_between_batches_counts_from_the_next_batch(
    sessions: async_sessionmaker[AsyncSession], router: EventRouter
) -> None:
    # The router has read the subscriptions (none for production) before the new one exists.
    before = event(catalogue.COMMITMENT_CREATED, {**feedback(customer()), "department": "production"})
    await route(sessions, router, before)
    assert await deliveries_of(sessions, before) == set()

    subscription_id = await subscribe(sessions, "production")
    after = event(catalogue.COMMITMENT_CREATED, {**feedback(customer()), "department": "production"})
    await route(sessions, router, after)
    assert await deliveries_of(sessions, after) == {subscription_id}

    await execute(sessions, "UPDATE subscription SET status = 'disabled' WHERE id = :id", id=subscription_id)
    disabled = event(catalogue.COMMITMENT_CREATED, {**feedback(customer()), "department": "production"})
    await route(sessions, router, disabled)
    assert await departments_of(sessions, disabled) == {"production"}
    assert await deliveries_of(sessions, disabled) == set()


async def test_a_batch_that_owes_no_webhook_delivery_wakes_no_webhook_worker(
    sessions: async_sessionmaker[AsyncSession], router: EventRouter, database_url: str
) -> None:
    await subscribe(sessions, "sales")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(database_url))
    sender = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        await listener.add_listener("webhook_delivery", lambda *args: heard.put_nowait(args[3]))

        async def heard_until_marker() -> list[str]:
            # Notices arrive in the order their transactions committed: what came before the marker, came.
            await sender.execute("SELECT pg_notify('webhook_delivery', 'marker')")
            found = [await asyncio.wait_for(heard.get(), 10)]
            while found[-1] != "marker":
                found.append(await asyncio.wait_for(heard.get(), 10))
            return found[:-1]

        # A complaint goes to support and management, for which nobody subscribed.
        complaint = event(catalogue.FEEDBACK_RECEIVED, feedback(customer(), "complaint"))
        await route(sessions, router, complaint)
        assert await departments_of(sessions, complaint) == {"support", "management"}
        assert await heard_until_marker() == []

        compliment = event(catalogue.FEEDBACK_RECEIVED, feedback(customer(), "compliment"))
        await route(sessions, router, compliment)
        assert len(await deliveries_of(sessions, compliment)) == 1
        assert await heard_until_marker() == [""]
    finally:
        await listener.close()
        await sender.close()
