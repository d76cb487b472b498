"""The consumer wrapper: one effect per event, poison to the dead-letter topic,
and no duplicate effect when partitions move between two members mid-stream."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaProducer, ConsumerRecord, TopicPartition
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.catalogue import FEEDBACK_RECEIVED
from shared.config import PlatformSettings
from shared.consumer import ConsumedEvent, EventConsumer, FetchPacing, lanes_of
from shared.db import create_engine, create_sessionmaker
from shared.events import CONTENT_TYPE, build_event
from shared.kafka import ensure_topics
from shared.observability import Metrics
from tests.support.kafka import read_topic
from tests.support.platform import Platform
from tests.support.waiting import eventually

EFFECT_TABLE = "CREATE TABLE IF NOT EXISTS consumer_effect (event_id text, consumer text, n int, seq bigserial)"
# The order effects were applied in (a table made before the column existed gets it).
EFFECT_ORDER = "ALTER TABLE consumer_effect ADD COLUMN IF NOT EXISTS seq bigserial"


async def record_effect(session: AsyncSession, event: ConsumedEvent) -> None:
    if event.data.get("fail"):
        raise ValueError("this event can never be handled")
    await session.execute(
        text("INSERT INTO consumer_effect (event_id, consumer, n) VALUES (:id, :consumer, :n)"),
        {"id": event.id, "consumer": event.data["run"], "n": event.data["n"]},
    )


@dataclass
class Harness:
    settings: PlatformSettings
    producer: AIOKafkaProducer
    run: str
    platform: Platform

    def consumer(self, name: str | None = None, *, lanes: int = 1) -> EventConsumer:
        engine = create_engine(self.settings.database_url, pool_size=2)
        return EventConsumer(
            settings=self.settings,
            sessionmaker=create_sessionmaker(engine),
            producer=self.producer,
            metrics=Metrics("probe"),
            name=name or f"probe-{uuid.uuid4().hex[:8]}",
            topics=["feedback.events"],
            handler=record_effect,
            retry_delays=(0.01, 0.02),
            lanes=lanes,
        )

    async def publish(self, value: bytes, key: str = "k") -> None:
        await self.producer.send_and_wait(
            self.settings.topic("feedback.events"),
            value=value,
            key=key.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )

    def event(self, n: int, **extra: object) -> bytes:
        return build_event(
            FEEDBACK_RECEIVED, data={"n": n, "run": self.run, **extra}, subject=str(n), customer_id=f"c{n % 7}"
        ).value

    async def effects(self) -> list[tuple[str, int]]:
        rows = await self.platform.fetch(
            "feedback", "SELECT event_id, n FROM consumer_effect WHERE consumer = $1", self.run
        )
        return [(r["event_id"], r["n"]) for r in rows]

    async def effects_once(self, *markers: int, within: float = 30) -> list[tuple[str, int]]:
        """Every effect, once the effects of `markers` are in.

        Each marker was published after the events it vouches for, on their partition: a consumer handles a
        partition in order, so a duplicate effect of an earlier event would be in before the marker's.
        """

        async def marked() -> list[tuple[str, int]] | None:
            found = await self.effects()
            return found if set(markers) <= {n for _, n in found} else None

        return await eventually(marked, within=within)


@pytest_asyncio.fixture(loop_scope="session")
async def harness(platform: Platform) -> AsyncIterator[Harness]:
    await platform.fetch("feedback", EFFECT_TABLE)
    await platform.fetch("feedback", EFFECT_ORDER)
    run = uuid.uuid4().hex[:8]
    settings = platform.settings("feedback", topic_prefix=f"c{run}.")
    await ensure_topics(settings)
    producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap_servers, acks="all")
    await producer.start()
    try:
        yield Harness(settings, producer, run, platform)
    finally:
        await producer.stop()


async def _running(consumer: EventConsumer) -> asyncio.Task[None]:
    return asyncio.create_task(consumer.run())


async def test_an_idle_consumer_fetches_less_often_until_an_event_comes(harness: Harness) -> None:
    """After a quiet second the fetch wait grows (fewer fetches of an idle broker); an event comes through and
    the wait is short again."""
    settings = harness.settings.model_copy(update={"kafka_fetch_max_wait_ms": 10, "kafka_idle_fetch_max_wait_ms": 250})
    consumer = replace(harness, settings=settings).consumer()
    task = await _running(consumer)

    async def idle() -> FetchPacing | None:
        pacing, current = consumer.fetch_pacing, consumer._current
        # The wait aiokafka's fetcher puts in each fetch request it builds.
        built = current._fetcher._fetch_max_wait_ms if current is not None and current._fetcher else None
        return pacing if pacing is not None and pacing.wait_ms == 250 == built else None

    try:
        pacing = await eventually(idle, within=30)
        quickened = pacing.quickened
        await harness.publish(harness.event(1))
        await harness.effects_once(1)
        assert pacing.quickened == quickened + 1
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_an_event_delivered_twice_has_one_effect(harness: Harness) -> None:
    task = await _running(harness.consumer())
    try:
        value = harness.event(1)
        await harness.publish(value)
        await harness.publish(value)
        await harness.publish(harness.event(2))  # on the same partition, after the duplicate
        effects = await harness.effects_once(2)
        assert sorted(n for _, n in effects) == [1, 2]
    finally:
        task.cancel()


async def test_poison_messages_are_dead_lettered_and_later_messages_flow(harness: Harness) -> None:
    task = await _running(harness.consumer())
    try:
        await harness.publish(b"this is not a cloudevent", key="poison")
        await harness.publish(harness.event(10, fail=True), key="poison")
        await harness.publish(harness.event(11), key="poison")  # behind the poison, on its partition
        effects = await harness.effects_once(11)
        assert [n for _, n in effects] == [11]
        dead = await read_topic(
            harness.platform.bootstrap_servers,
            harness.settings.topic("feedback.events.dlq"),
            until=lambda found: len(found) >= 2,
        )
        assert next(r.value for r in dead) == b"this is not a cloudevent"
        assert b"this event can never be handled" in dict(dead[1].headers)["cf-error"]
        assert dict(dead[1].headers)["cf-original-topic"] == harness.settings.topic("feedback.events").encode()
    finally:
        task.cancel()


def test_lanes_keep_each_partition_number_whole_and_in_order() -> None:
    def records(topic: str, partition: int, count: int) -> list[ConsumerRecord]:
        return [ConsumerRecord(topic, partition, offset, 0, 0, None, b"v", None, 0, 1, []) for offset in range(count)]

    batches = {
        TopicPartition(topic, partition): records(topic, partition, 3)
        for topic in ("commitments.events", "feedback.events")
        for partition in range(4)
    }
    lanes = lanes_of(batches, 2)
    assert [sorted({(r.topic, r.partition) for r in lane}) for lane in lanes] == [
        [(t, p) for t in ("commitments.events", "feedback.events") for p in (0, 2)],
        [(t, p) for t in ("commitments.events", "feedback.events") for p in (1, 3)],
    ]
    for lane in lanes:
        for where in {(r.topic, r.partition) for r in lane}:
            assert [r.offset for r in lane if (r.topic, r.partition) == where] == [0, 1, 2]
    assert lanes_of(batches, 1) == [[r for tp in sorted(batches) for r in batches[tp]]]
    assert lanes_of({TopicPartition("feedback.events", 5): records("feedback.events", 5, 1)}, 4) == [
        records("feedback.events", 5, 1)
    ]


async def test_a_consumer_with_two_lanes_applies_every_event_once_and_each_key_in_order(harness: Harness) -> None:
    keys = [f"customer-{k}" for k in range(12)]  # over most of the six partitions
    for round_ in range(10):
        for k, key in enumerate(keys):
            await harness.publish(harness.event(round_ * 100 + k), key=key)
    task = await _running(harness.consumer(lanes=2))
    try:
        markers = [900 + k for k in range(len(keys))]  # each key's last event
        await harness.effects_once(*markers)
        rows = await harness.platform.fetch(
            "feedback", "SELECT n FROM consumer_effect WHERE consumer = $1 ORDER BY seq", harness.run
        )
        applied = [r["n"] for r in rows]
        assert sorted(applied) == sorted(round_ * 100 + k for round_ in range(10) for k in range(len(keys)))
        for k in range(len(keys)):
            assert [n for n in applied if n % 100 == k] == [round_ * 100 + k for round_ in range(10)]
    finally:
        task.cancel()


async def test_poison_in_one_lane_is_dead_lettered_and_every_lane_flows_on(harness: Harness) -> None:
    keys = [f"customer-{k}" for k in range(12)]  # over most of the six partitions, so both lanes have work
    await harness.publish(b"this is not a cloudevent", key=keys[0])
    await harness.publish(harness.event(30, fail=True), key=keys[0])
    for k, key in enumerate(keys):
        await harness.publish(harness.event(40 + k), key=key)  # behind the poison on its partition, and elsewhere
    task = await _running(harness.consumer(lanes=2))
    try:
        effects = await harness.effects_once(*(40 + k for k in range(len(keys))))
        assert sorted(n for _, n in effects) == [40 + k for k in range(len(keys))]
        dead = await read_topic(
            harness.platform.bootstrap_servers,
            harness.settings.topic("feedback.events.dlq"),
            until=lambda found: len(found) >= 2,
        )
        assert dead[0].value == b"this is not a cloudevent"
        assert b"this event can never be handled" in dict(dead[1].headers)["cf-error"]
    finally:
        task.cancel()


@pytest.mark.slow
async def test_two_members_splitting_partitions_mid_stream_give_each_event_one_effect(harness: Harness) -> None:
    group = f"group-{uuid.uuid4().hex[:8]}"
    first = await _running(harness.consumer(group))
    second: asyncio.Task[None] | None = None
    try:
        for n in range(300):
            await harness.publish(harness.event(n), key=f"c{n % 13}")
            if n == 100:
                second = await _running(harness.consumer(group))  # a rebalance mid-stream
            if n == 200:
                first.cancel()  # a member leaves mid-stream: its partitions move
        effects = await harness.effects_once(*range(300), within=60)
        # Once the partitions have settled, one marker per key: a late duplicate would come before it.
        markers = range(300, 313)
        for n in markers:
            await harness.publish(harness.event(n), key=f"c{n % 13}")
        effects = await harness.effects_once(*markers, within=60)
        assert sorted(n for _, n in effects) == [*range(300), *markers]
    finally:
        first.cancel()
        if second is not None:
            second.cancel()
