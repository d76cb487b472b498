"""The relay rides out a broker outage: paused, or killed and restarted empty."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI

from ops.embedded import EmbeddedBroker, free_port
from shared.catalogue import FEEDBACK_RECEIVED
from shared.kafka import ensure_topics
from shared.outbox import add_event
from shared.service import ServiceRuntime
from tests.shared.probe_app import create_probe_app
from tests.support.kafka import read_topic
from tests.support.platform import Platform, serve


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[EmbeddedBroker]:
    """A broker of this test's own, so stopping it disturbs no other test."""
    broker = EmbeddedBroker(free_port(), log_file=tmp_path / "broker.log")
    broker.start()
    try:
        yield broker
    finally:
        if broker.process is not None and broker.process.poll() is None:
            os.kill(broker.process.pid, signal.SIGCONT)
        broker.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def relaying(platform: Platform, own_broker: EmbeddedBroker) -> AsyncIterator[FastAPI]:
    settings = platform.settings(
        "feedback", kafka_bootstrap_servers=own_broker.bootstrap_servers, topic_prefix="outage."
    )
    await ensure_topics(settings)
    app = create_probe_app(settings)
    async with serve(app):
        yield app


async def _write(app: FastAPI, customer: str, count: int) -> list[str]:
    runtime: ServiceRuntime = app.state.runtime
    ids = []
    for n in range(count):
        async with runtime.sessionmaker() as session, session.begin():
            ids.append(
                str(await add_event(session, FEEDBACK_RECEIVED, data={"n": n}, subject=str(n), customer_id=customer))
            )
    return ids


async def _published(broker: EmbeddedBroker, customer: str, expected: int) -> list[str]:
    records = await read_topic(
        broker.bootstrap_servers,
        "outage.feedback.events",
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len({orjson.loads(r.value)["id"] for r in found}) >= expected,
        within=60,
    )
    return [orjson.loads(r.value)["id"] for r in records]


async def test_events_written_while_the_broker_is_paused_all_arrive(
    relaying: FastAPI, own_broker: EmbeddedBroker
) -> None:
    assert own_broker.process is not None
    customer = f"paused-{uuid.uuid4().hex[:8]}"
    before = await _write(relaying, customer, 5)
    os.kill(own_broker.process.pid, signal.SIGSTOP)
    try:
        during = await _write(relaying, customer, 20)
        await asyncio.sleep(12)  # longer than the producer's request timeout
    finally:
        os.kill(own_broker.process.pid, signal.SIGCONT)
    after = await _write(relaying, customer, 5)
    published = await _published(own_broker, customer, 30)
    assert set(published) == set(before + during + after)
    first_seen = list(dict.fromkeys(published))
    assert first_seen == before + during + after, "order per key survives the outage"


async def test_events_survive_a_broker_that_is_killed_and_restarted_empty(
    relaying: FastAPI, own_broker: EmbeddedBroker
) -> None:
    customer = f"killed-{uuid.uuid4().hex[:8]}"
    own_broker.stop()
    during = await _write(relaying, customer, 10)
    await asyncio.sleep(2)
    own_broker.start()  # memory-only: it comes back without topics; the relay recreates them
    published = await _published(own_broker, customer, 10)
    assert set(published) == set(during)
