"""Reading topics the way an integrator would: a real aiokafka consumer."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeAlias

from aiokafka import AIOKafkaConsumer, TopicPartition

Record: TypeAlias = Any  # aiokafka's ConsumerRecord (the library ships no types)


async def read_topic(
    bootstrap_servers: str,
    topic: str,
    *,
    until: Callable[[list[Record]], bool],
    where: Callable[[Record], bool] = lambda _: True,
    within: float = 20.0,
) -> list[Record]:
    """Every record of `topic` from the beginning that matches `where`, read until `until` holds."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    await consumer.start()
    found: list[Record] = []
    try:
        deadline = time.monotonic() + within
        partitions = await _partitions_of(consumer, topic, deadline)
        assignment = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(assignment)
        await consumer.seek_to_beginning(*assignment)
        while not until(found):
            if time.monotonic() > deadline:
                break
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                found.extend(r for r in records if where(r))
        return found
    finally:
        await consumer.stop()


async def read_to_end(
    bootstrap_servers: str,
    topic: str,
    *,
    where: Callable[[Record], bool] = lambda _: True,
    until: Callable[[list[Record]], bool] | None = None,
    within: float = 60.0,
) -> list[Record]:
    """Every record of `topic` up to the end offsets as they are now, that matches `where`.

    With `until`, reading goes on past those offsets (asking the broker for its end offsets again)
    until `until` holds, and what was found is returned at the deadline: the embedded broker, after
    a pause, can report end offsets behind what it has acknowledged.
    """
    # Earliest, like `read_topic`: with "latest", a fetch the broker answers "out of range" would skip
    # to the end and read nothing.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        deadline = time.monotonic() + within
        partitions = [TopicPartition(topic, p) for p in sorted(await _partitions_of(consumer, topic, deadline))]
        consumer.assign(partitions)
        ends = await consumer.end_offsets(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[Record] = []
        remaining = set(partitions)
        while True:
            for tp in list(remaining):
                if await consumer.position(tp) >= ends[tp]:
                    remaining.discard(tp)
            if not remaining:
                if until is None or until(found):
                    break
                ends = await consumer.end_offsets(partitions)
                remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
            if time.monotonic() > deadline:
                if until is not None:
                    return found
                raise TimeoutError(f"{topic}: could not read to the end offsets {ends} within {within:.0f}s")
            for records in (await consumer.getmany(*(remaining or partitions), timeout_ms=200)).values():
                found.extend(r for r in records if where(r))
        return found
    finally:
        await consumer.stop()


async def _partitions_of(consumer: AIOKafkaConsumer, topic: str, deadline: float) -> set[int]:
    """The partitions of `topic`, refreshing the consumer's metadata until it knows them."""
    while True:
        partitions = consumer.partitions_for_topic(topic)
        if partitions:
            return set(partitions)
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} does not exist")
        await consumer._client.force_metadata_update()
        await asyncio.sleep(0.1)
