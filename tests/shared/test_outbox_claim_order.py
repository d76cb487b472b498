"""The relay's claim takes the oldest rows, at most a batch, whatever plan PostgreSQL picks (issue 21).

The claim was `DELETE ... WHERE id IN (SELECT id ... ORDER BY id LIMIT n FOR UPDATE SKIP LOCKED)`.
When the planner ran it as a nested-loop semi join (it does when the statistics describe a
nearly empty outbox, as autovacuum leaves a table the relay keeps drained), the LIMITed subquery
ran again for every row the outer scan visited, skipping the rows this statement had already
deleted: one claim deleted far more than a batch, and, the outer scan being in heap order, rows
that sat early in the heap (reused free space) while still beyond the window were left for the
next claim while later ids of the same key went out now. The crash test saw it: claims of 2,000,
3,998 and 8,908 rows with LIMIT 500, and 7 customers out of order on `notifications.support`
while the inbox rows were in order.

Here the statistics-driven plan is pinned with planner settings on a database of the test's own,
and the heap is laid out the way free-space reuse lays it out, so the old claim fails every time.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import orjson
import pytest_asyncio
from sqlalchemy.engine import make_url

from ops.platform import migrations_of
from shared.catalogue import FEEDBACK_RECEIVED
from shared.db import asyncpg_dsn
from shared.events import build_event
from shared.kafka import create_producer, ensure_topics
from shared.migrations import upgrade
from shared.observability import Metrics
from shared.outbox import _CLAIM, BATCH_SIZE, OutboxRelay, outbox_values
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform

# The plan PostgreSQL chose on its own in the crash test: a nested-loop semi join over a heap scan.
_NESTED_LOOP_PLAN = ("enable_hashjoin", "enable_mergejoin", "enable_material", "enable_hashagg", "enable_sort")
_INSERT = "INSERT INTO outbox_event (event_id, topic, key, event_type, value) VALUES ($1, $2, $3, $4, $5)"


@pytest_asyncio.fixture(loop_scope="session")
async def outbox_database(platform: Platform) -> AsyncIterator[str]:
    """A migrated feedback database of this test's own, its planner pinned to a nested loop."""
    name = f"cf_claim_{uuid.uuid4().hex[:8]}"
    server = await asyncpg.connect(platform.dsn("feedback"))
    try:
        await server.execute(f'CREATE DATABASE "{name}"')
        for setting in _NESTED_LOOP_PLAN:
            await server.execute(f'ALTER DATABASE "{name}" SET {setting} = off')
    finally:
        await server.close()
    url = make_url(platform.database_urls["feedback"]).set(database=name).render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade, migrations_of("feedback"), url)
        yield url
    finally:
        server = await asyncpg.connect(platform.dsn("feedback"))
        try:
            await server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await server.close()


def _rows(customers: list[str], run: str, start: int) -> list[tuple[object, ...]]:
    return [
        outbox_values(
            build_event(
                FEEDBACK_RECEIVED,
                data={"run": run, "n": start + i},
                subject=f"{run}-{start + i}",
                customer_id=customer,
            )
        )
        for i, customer in enumerate(customers)
    ]


async def _lay_out_heap(conn: asyncpg.Connection, run: str, customer: str) -> None:
    """A backlog whose first rows were published and vacuumed; the customer's first event lands
    in that free space, its second one after the backlog, within one batch of the oldest row."""
    await conn.execute("ALTER TABLE outbox_event SET (autovacuum_enabled = false)")
    await conn.executemany(_INSERT, _rows([f"{run}-other-{i}" for i in range(1000)], run, 0))
    await conn.execute("DELETE FROM outbox_event WHERE id IN (SELECT id FROM outbox_event ORDER BY id LIMIT 400)")
    await conn.execute("VACUUM ANALYZE outbox_event")
    await conn.executemany(_INSERT, _rows([customer], run, 1000))
    await conn.executemany(_INSERT, _rows([f"{run}-filler-{i}" for i in range(450)], run, 1001))
    await conn.executemany(_INSERT, _rows([customer], run, 1451))


async def test_a_claim_takes_at_most_a_batch_of_the_oldest_rows(outbox_database: str) -> None:
    conn = await asyncpg.connect(asyncpg_dsn(outbox_database))
    try:
        run = uuid.uuid4().hex[:8]
        await _lay_out_heap(conn, run, f"{run}-x")
        oldest = [row["id"] for row in await conn.fetch("SELECT id FROM outbox_event ORDER BY id LIMIT $1", BATCH_SIZE)]
        tx = conn.transaction()
        await tx.start()
        try:
            claimed = sorted(row["id"] for row in await conn.fetch(_CLAIM, BATCH_SIZE))
        finally:
            await tx.rollback()
        assert len(claimed) <= BATCH_SIZE, f"one claim took {len(claimed)} rows with a batch of {BATCH_SIZE}"
        assert claimed == oldest, "a claim takes the oldest rows, so no later row of a key goes out first"
    finally:
        await conn.close()


async def test_the_relay_publishes_a_customers_events_in_order_whatever_the_heap_order(
    outbox_database: str, platform: Platform
) -> None:
    prefix = f"c{uuid.uuid4().hex[:8]}."
    settings = platform.settings("feedback", database_url=outbox_database, topic_prefix=prefix)
    await ensure_topics(settings)
    run = uuid.uuid4().hex[:8]
    customer = f"{run}-x"
    conn = await asyncpg.connect(asyncpg_dsn(outbox_database))
    try:
        await _lay_out_heap(conn, run, customer)
        expected = await conn.fetchval("SELECT count(*) FROM outbox_event")
    finally:
        await conn.close()

    producer = create_producer(settings)
    await producer.start()
    relay = OutboxRelay(settings=settings, producer=producer, metrics=Metrics("feedback"))
    relaying = asyncio.create_task(relay.run())
    try:
        records = await read_topic(
            platform.bootstrap_servers,
            f"{prefix}feedback.events",
            until=lambda found: len(found) >= expected,
            within=60,
        )
    finally:
        relaying.cancel()
        await asyncio.gather(relaying, return_exceptions=True)
        await producer.stop()

    def number(record: Record) -> int:
        return int(orjson.loads(record.value)["data"]["n"])

    assert len(records) == expected
    assert [number(r) for r in records if r.key.decode() == customer] == [1000, 1451], (
        "the customer's first event before its second"
    )
