"""While the database is down, and after it is back.

The consumer waits, dead-letters nothing, and handles every event once when
the database is back. Requests get a 503 problem while it is down and
succeed again once it has restarted, on the same service: the engine's pool
replaces the connections PostgreSQL closed.

Runs on a PostgreSQL cluster of its own, so that stopping it leaves the rest of
the suite alone.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest_asyncio
from aiokafka import AIOKafkaProducer

from ops.embedded import EmbeddedPostgres
from ops.platform import migrations_of
from shared.consumer import EventConsumer
from shared.db import asyncpg_dsn, create_engine, create_sessionmaker
from shared.errors import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from shared.kafka import ensure_topics
from shared.migrations import upgrade
from shared.observability import Metrics
from tests.shared.probe_app import CREATE_TABLE, create_probe_app
from tests.shared.test_consumer import EFFECT_TABLE, Harness, record_effect
from tests.support.kafka import read_to_end
from tests.support.platform import Platform, private_directory, serve
from tests.support.waiting import eventually

# A handler error is retried this often, then dead-lettered: the outage must outlast it many times.
RETRY_DELAYS = (0.01, 0.02)


@pytest_asyncio.fixture(loop_scope="session")
async def own_postgres() -> AsyncIterator[EmbeddedPostgres]:
    # Not pytest's tmp_path: its folders are 0700 (PostgreSQL runs as another user) and pruned by other runs.
    with private_directory("cf-outage-") as folder:
        postgres = EmbeddedPostgres(folder / "pg")
        await asyncio.to_thread(postgres.start)
        try:
            await asyncio.to_thread(postgres.create_database, "outage")
            await asyncio.to_thread(upgrade, migrations_of("feedback"), postgres.url("outage"))
            yield postgres
        finally:
            await asyncio.to_thread(postgres.stop)


async def _effects(postgres: EmbeddedPostgres, run: str) -> list[int]:
    conn = await asyncpg.connect(asyncpg_dsn(postgres.url("outage")))
    try:
        rows = await conn.fetch("SELECT n FROM consumer_effect WHERE consumer = $1 ORDER BY n", run)
    finally:
        await conn.close()
    return [row["n"] for row in rows]


async def _effects_once(postgres: EmbeddedPostgres, run: str, marker: int, within: float = 60) -> list[int]:
    """Every effect, once the effect of `marker` is in: it was published last on the partition, and a
    consumer handles a partition in order, so a duplicate of an earlier event would be in before it."""

    async def marked() -> list[int] | None:
        found = await _effects(postgres, run)
        return found if marker in found else None

    return await eventually(marked, within=within)


async def test_events_that_arrive_while_the_database_is_down_wait_and_are_handled_once(
    own_postgres: EmbeddedPostgres, platform: Platform
) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(own_postgres.url("outage")))
    await conn.execute(EFFECT_TABLE)
    await conn.close()
    run = uuid.uuid4().hex[:8]
    settings = platform.settings("feedback", topic_prefix=f"d{run}.", database_url=own_postgres.url("outage"))
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap_servers, acks="all")
    await producer.start()
    harness = Harness(settings, producer, run, platform)
    engine = create_engine(settings.database_url, pool_size=2)
    consumer = EventConsumer(
        settings=settings,
        sessionmaker=create_sessionmaker(engine),
        producer=producer,
        metrics=Metrics("probe"),
        name=f"probe-{run}",
        topics=["feedback.events"],
        handler=record_effect,
        retry_delays=RETRY_DELAYS,  # a handler error would be dead-lettered within milliseconds
    )
    task = asyncio.create_task(consumer.run())
    try:
        await harness.publish(harness.event(1))
        assert await _effects_once(own_postgres, run, 1) == [1]

        await asyncio.to_thread(own_postgres.stop)
        for n in range(2, 7):
            await harness.publish(harness.event(n))
        # The outage lasts until the consumer has met it more times than a handler error may be retried.
        met_before = consumer.database_waits

        async def met_many_times() -> bool:
            return consumer.database_waits >= met_before + 2 * (len(RETRY_DELAYS) + 1)

        await eventually(met_many_times, within=60)
        assert not task.done(), "the consumer rides out the outage"

        await asyncio.to_thread(own_postgres.start)
        await harness.publish(harness.event(7))  # the marker, after them on their partition
        # An event dead-lettered during the outage would have no effect.
        assert await _effects_once(own_postgres, run, 7) == [1, 2, 3, 4, 5, 6, 7]
        dead = await read_to_end(platform.bootstrap_servers, settings.topic("feedback.events.dlq"), within=10)
        assert dead == [], "nothing is dead-lettered while the database is down"
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await producer.stop()
        await engine.dispose()


async def test_pooled_sessions_serve_requests_again_after_postgres_restarts(
    own_postgres: EmbeddedPostgres, platform: Platform
) -> None:
    database_url = own_postgres.url("outage")
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    await conn.execute(CREATE_TABLE)
    await conn.close()
    settings = platform.settings("feedback", database_url=database_url, run_workers=False)
    app = create_probe_app(settings)
    writer = platform.auth("feedback:write")
    async with serve(app) as client:

        async def create(name: str) -> httpx.Response:
            return await client.post("/probes", json={"name": name}, headers=writer)

        before = await asyncio.gather(*(create(f"before-{n}") for n in range(4)))
        assert [r.status_code for r in before] == [201] * 4, [r.text for r in before]
        pool = app.state.runtime.engine.pool
        assert pool.checkedin() >= 2, "the pool holds several connections when PostgreSQL goes away"

        await asyncio.to_thread(own_postgres.stop)
        down = await create("during")
        assert down.status_code == 503, down.text
        assert down.headers["content-type"] == PROBLEM_MEDIA_TYPE
        assert down.headers["retry-after"] == "1"
        assert down.json()["type"] == PROBLEM_BASE + "service-unavailable"

        await asyncio.to_thread(own_postgres.start)
        # As many at once as the pool holds at most: every slot is used again, those whose connection died too.
        after = await asyncio.gather(*(create(f"after-{n}") for n in range(2 * settings.database_pool_size)))
        assert [r.status_code for r in after] == [201] * len(after), [r.text for r in after]
        assert (await create("later")).status_code == 201

    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        names = {row["name"] for row in await conn.fetch("SELECT name FROM probe")}
    finally:
        await conn.close()
    assert names == {r.json()["name"] for r in before + after} | {"later"}, "the failed request wrote nothing"
