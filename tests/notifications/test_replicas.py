"""Exactly once per department across replicas of the consumer and a replica stopped mid-stream."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.notifications.app import create_app
from shared import catalogue
from shared.consumer import EventConsumer
from shared.events import OutboxRecord, build_event
from tests.notifications.conftest import notifications_settings
from tests.notifications.helpers import ROUTER_GROUP, EventPublisher, customer, feedback
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve
from tests.support.waiting import eventually


def customers_on_every_partition(partitions: int, *, each: int = 2) -> list[str]:
    """Customers whose events land on every partition (`each` per partition), so that whichever
    partitions a replica holds, events come its way."""
    partitioner = DefaultPartitioner()
    found: dict[int, list[str]] = {p: [] for p in range(partitions)}
    while any(len(c) < each for c in found.values()):
        candidate = customer()
        partition = partitioner(candidate.encode(), list(range(partitions)), list(range(partitions)))
        if len(found[partition]) < each:
            found[partition].append(candidate)
    return [c for chosen in found.values() for c in chosen]


async def handled(platform: Platform, records: list[OutboxRecord]) -> int:
    rows = await platform.fetch(
        "notifications",
        "SELECT count(*) AS n FROM processed_event WHERE consumer = $1 AND event_id = ANY($2::text[])",
        ROUTER_GROUP,
        [str(r.event_id) for r in records],
    )
    return int(rows[0]["n"])


@pytest.mark.slow
@pytest.mark.usefixtures("notifications")
async def test_two_more_replicas_and_one_stopped_mid_stream_give_each_department_each_event_once(
    publisher: EventPublisher, platform: Platform
) -> None:
    settings = notifications_settings(platform, router_consumers=1)
    customers = customers_on_every_partition(settings.kafka_topic_partitions)
    sent: list[OutboxRecord] = []
    stop_publishing = asyncio.Event()

    async def keep_publishing() -> None:
        while not stop_publishing.is_set():
            chunk = []
            for n in range(20):
                data = feedback(customers[(len(sent) + n) % len(customers)], "complaint")
                chunk.append(
                    build_event(
                        catalogue.FEEDBACK_RECEIVED, data=data, subject=data["id"], customer_id=data["customer_id"]
                    )
                )
            await publisher.send_all(chunk)
            sent.extend(chunk)
            await asyncio.sleep(0.1)

    staying, leaving = create_app(settings), create_app(settings)
    async with serve(staying):
        leaving_context = serve(leaving)
        await leaving_context.__aenter__()
        publishing = asyncio.create_task(keep_publishing())
        try:

            def consumers() -> list[EventConsumer]:
                running: list[EventConsumer] = leaving.state.runtime.consumers
                return running

            async def leaving_has_routed() -> bool:
                return sum(c.processed for c in consumers()) >= 20

            # Generous: the embedded broker re-forms a consumer group slowly (README, "Honest limits").
            try:
                await eventually(leaving_has_routed, within=120)
            except AssertionError as exc:
                held = sorted((tp.topic, tp.partition) for c in consumers() for tp in c.assigned())
                processed = sum(c.processed for c in consumers())
                raise AssertionError(f"the second replica routed {processed} events, holding {held}") from exc
            # Its consumer is cancelled wherever it is: before, inside or after a batch's transaction.
            await leaving_context.__aexit__(None, None, None)
            left_at = len(sent)

            async def sent_while_its_partitions_move() -> bool:
                return len(sent) >= left_at + 40

            await eventually(sent_while_its_partitions_move)
        finally:
            stop_publishing.set()
            await publishing
            if leaving.state.runtime.tasks and not all(t.done() for t in leaving.state.runtime.tasks):
                await leaving_context.__aexit__(None, None, None)

        async def all_handled() -> bool:
            return await handled(platform, sent) >= len(sent)

        await eventually(all_handled, within=120)
        # One marker per customer, after everything else (routed before this replica leaves too): each
        # department topic keeps a customer's order, so a second copy of any event would be on it before the marker.
        markers = [
            build_event(catalogue.FEEDBACK_RECEIVED, data=data, subject=data["id"], customer_id=data["customer_id"])
            for data in (feedback(c, "complaint") for c in customers)
        ]
        await publisher.send_all(markers)

        async def markers_handled() -> bool:
            return await handled(platform, markers) >= len(markers)

        await eventually(markers_handled, within=60)

    event_ids = {str(r.event_id) for r in sent}
    marker_ids = {str(r.event_id) for r in markers}
    keys = {c.encode() for c in customers}
    for department in ("support", "management"):
        found = await read_topic(
            platform.bootstrap_servers,
            platform.topic(f"notifications.{department}"),
            where=lambda r: r.key in keys,
            until=lambda found: marker_ids <= {orjson.loads(r.value)["id"] for r in found},
            within=60,
        )
        copies = Counter(orjson.loads(r.value)["id"] for r in found)
        assert set(copies) == event_ids | marker_ids
        assert set(copies.values()) == {1}
    rows = await platform.fetch(
        "notifications",
        "SELECT department, count(*) AS n FROM notification WHERE event_id = ANY($1::uuid[]) GROUP BY department",
        [r.event_id for r in sent],
    )
    assert {row["department"]: row["n"] for row in rows} == {"support": len(sent), "management": len(sent)}
