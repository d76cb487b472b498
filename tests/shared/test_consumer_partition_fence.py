"""Two members of a group on one partition (a zombie after a rebalance) keep each key's order
in the order their transactions got their ids, which the live stream follows (issue 21).

A transaction gets its id at its first write. A member whose batch spans two partitions wrote
its first claims, then waited on a row of the other partition that a zombie member had claimed;
the zombie committed that row, and the waiting member went on to the next event of the same
key: it held the later event with the older transaction id, so (txid, seq) put that event before
the one it follows. Each batch now takes a transaction lock per (group, topic, partition), in a
fixed order, before it writes anything, so a second member on a partition waits for the first
before it gets a transaction id.

The interleaving is driven by hand: a third transaction holds one claimed event open so the
member with the wider batch has written and waits, while the zombie handles the shared event.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from shared.consumer import ConsumedEvent, EventConsumer
from shared.kafka import create_producer
from shared.observability import Metrics
from tests.support.platform import Platform


@pytest_asyncio.fixture(loop_scope="session")
async def probe_table(platform: Platform) -> AsyncIterator[str]:
    """Where the handler writes each event with its transaction id and a sequence, as notifications do."""
    name = f"fence_probe_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(platform.dsn("feedback"))
    try:
        await conn.execute(
            f"CREATE TABLE {name} (event_id text PRIMARY KEY, "
            "txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), "
            "seq bigint GENERATED ALWAYS AS IDENTITY)"
        )
        yield name
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {name}")
        await conn.close()


def _event(topic: str, partition: int, offset: int, event_id: str) -> ConsumedEvent:
    return ConsumedEvent({"id": event_id, "type": "probe", "data": {}}, topic, partition, offset)


async def test_a_second_member_on_a_partition_waits_before_it_writes(platform: Platform, probe_table: str) -> None:
    settings = platform.settings("feedback")
    engine = create_async_engine(platform.database_urls["feedback"], pool_size=4)
    sessions = async_sessionmaker(engine, expire_on_commit=False)

    def consumer() -> EventConsumer:
        async def handle(session: AsyncSession, events: Sequence[ConsumedEvent]) -> None:
            for event in events:
                await session.execute(text(f"INSERT INTO {probe_table} (event_id) VALUES (:id)"), {"id": event.id})

        return EventConsumer(
            settings=settings,
            sessionmaker=sessions,
            producer=create_producer(settings),  # never started: nothing is dead-lettered here
            metrics=Metrics("feedback"),
            name=f"fence-{probe_table}",
            topics=["feedback.events"],
            batch_handler=handle,
        )

    run = uuid.uuid4().hex[:8]
    first, second, other, held = (f"{run}-{name}" for name in ("first", "second", "other", "held"))
    wide, zombie = consumer(), consumer()
    blocker = await asyncpg.connect(platform.dsn("feedback"))
    try:
        # A third transaction holds `held` claimed, so the wide member's claim waits on it mid-statement.
        blocker_tx = blocker.transaction()
        await blocker_tx.start()
        await blocker.execute("INSERT INTO processed_event (consumer, event_id) VALUES ($1, $2)", wide.group_id, held)
        # The wide member's batch: partition 1 (`other`, `held`), then the key's two events on partition 0.
        wide_batch = asyncio.create_task(
            wide._apply_batch(
                [
                    _event("feedback.events", 1, 10, other),
                    _event("feedback.events", 1, 11, held),
                    _event("feedback.events", 0, 20, first),
                    _event("feedback.events", 0, 21, second),
                ]
            )
        )
        await _until_waiting(platform, count=1)
        # The zombie still handles partition 0 from its old assignment: the key's first event.
        zombie_batch = asyncio.create_task(zombie._apply_batch([_event("feedback.events", 0, 20, first)]))
        # Until the zombie has committed (no fence) or waits for the wide member's partition lock (the fence).
        await _until_waiting(platform, count=2, or_done=zombie_batch)
        await blocker_tx.rollback()
        await asyncio.wait_for(asyncio.gather(wide_batch, zombie_batch), 30)
    finally:
        await blocker.close()
        await engine.dispose()

    rows = await platform.fetch("feedback", f"SELECT event_id, txid, seq FROM {probe_table} ORDER BY txid, seq")
    in_stream_order = [row["event_id"] for row in rows if row["event_id"] in (first, second)]
    assert in_stream_order == [first, second], "the key's events in the order the live stream reads them"
    assert len(rows) == 4, "each event handled once"


async def _until_waiting(
    platform: Platform, *, count: int, or_done: asyncio.Task[None] | None = None, within: float = 10.0
) -> None:
    """Until `count` claims in the feedback database wait on a lock (or `or_done` has finished)."""
    deadline = asyncio.get_running_loop().time() + within
    while or_done is None or not or_done.done():
        rows: list[Any] = await platform.fetch(
            "feedback",
            "SELECT count(*) AS n FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database() AND query LIKE '%processed_event%'",
        )
        if rows[0]["n"] >= count:
            return
        assert asyncio.get_running_loop().time() < deadline, "the wide member never waited"
        await asyncio.sleep(0.02)
