"""Floors measured in the same run as the platform's figures.

- bare FastAPI: uvicorn (uvloop, httptools) returning a small JSON to a GET;
- raw aiokafka: produce with acks=all and consume, the least a Kafka hop costs;
- two raw aiokafka hops: produce, consume, produce again, consume, the least the
  end-to-end path's two broker hops cost.
(The FastAPI + asyncpg insert floor lives in `bench/floor_app.py`.)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI

from bench.common import WrkRun, percentile, progress, run_wrk
from ops.embedded import free_port, wait_for_port
from shared.config import PlatformSettings

bare_app = FastAPI()


@bare_app.get("/ping")
async def ping() -> dict[str, str]:
    return {"status": "ok"}


def bare_fastapi(seconds: int = 10, connections: int = 64) -> WrkRun:
    """wrk against a bare FastAPI GET, one uvicorn worker like each service."""
    port = free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.floors:bare_app",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    )
    try:
        wait_for_port("127.0.0.1", port)
        run_wrk(f"http://127.0.0.1:{port}/ping", seconds=2, connections=connections)  # warm-up
        return run_wrk(f"http://127.0.0.1:{port}/ping", seconds=seconds, connections=connections)
    finally:
        server.terminate()
        server.wait(10)


async def aiokafka_round_trip(bootstrap: str, *, rate: int, seconds: float) -> list[float]:
    """Latency (ms) of raw produce (acks=all) → consume at `rate` messages/s."""
    (topic,) = await _new_topics(bootstrap, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=5, enable_auto_commit=False)
    await producer.start()
    await consumer.start()
    await asyncio.sleep(0.5)
    partitions = [TopicPartition(topic, p) for p in range(6)]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    latencies: list[float] = []
    total = int(rate * seconds)

    async def consume() -> None:
        while len(latencies) < total:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                latencies.extend((now - float(r.value)) * 1000 for r in records)

    reader = asyncio.create_task(consume())
    started = time.perf_counter()
    for n in range(total):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        await producer.send(topic, value=repr(time.perf_counter()).encode(), key=str(n % 50).encode())
    try:
        await asyncio.wait_for(reader, timeout=30)
    finally:
        await producer.stop()
        await consumer.stop()
    progress(f"raw aiokafka floor: p50 {percentile(latencies, 50):.1f} ms, p99 {percentile(latencies, 99):.1f} ms")
    return latencies


def platform_fetch_wait_ms() -> int:
    """The platform's consumers' fetch wait (`CF_KAFKA_FETCH_MAX_WAIT_MS`'s default)."""
    default = PlatformSettings.model_fields["kafka_fetch_max_wait_ms"].default
    return int(default)


@dataclass
class TwoHops:
    """Latencies (ms) of the two-hop floor, both from the first produce: to the middle consumer, and to the end."""

    first_hop: list[float] = field(default_factory=list)
    two_hops: list[float] = field(default_factory=list)


async def aiokafka_two_hops(bootstrap: str, *, rate: int, seconds: float) -> TwoHops:
    """Raw produce → consume → produce → consume at `rate` messages/s: the least a complaint's two broker hops
    (capture → feedback.events → notifications.<department>) cost on this broker.

    Like the platform: `acks=all` and no linger on both producers, 6 partitions keyed by 50 customers, and the
    consumers' fetch wait the platform's default (the embedded broker answers a fetch with nothing new only when
    that wait is over). Unlike it: no database, no group or offset commits, the message copied as it is.
    """
    first, second = await _new_topics(bootstrap, 2)
    fetch_wait = platform_fetch_wait_ms()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    relay = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    middle = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_wait, enable_auto_commit=False)
    end = AIOKafkaConsumer(bootstrap_servers=bootstrap, fetch_max_wait_ms=fetch_wait, enable_auto_commit=False)
    clients = (producer, relay, middle, end)
    for client in clients:
        await client.start()
    await asyncio.sleep(0.5)
    for consumer, topic in ((middle, first), (end, second)):
        partitions = [TopicPartition(topic, p) for p in range(6)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
    measured = TwoHops()
    total = int(rate * seconds)

    async def copy() -> None:
        while len(measured.first_hop) < total:
            for records in (await middle.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                for record in records:
                    measured.first_hop.append((now - float(record.value)) * 1000)
                    await relay.send(second, value=record.value, key=record.key)

    async def arrive() -> None:
        while len(measured.two_hops) < total:
            for records in (await end.getmany(timeout_ms=100)).values():
                now = time.perf_counter()
                measured.two_hops.extend((now - float(r.value)) * 1000 for r in records)

    copier, arrivals = asyncio.create_task(copy()), asyncio.create_task(arrive())
    started = time.perf_counter()
    for n in range(total):
        await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
        await producer.send(first, value=repr(time.perf_counter()).encode(), key=str(n % 50).encode())
    try:
        await asyncio.wait_for(asyncio.gather(copier, arrivals), timeout=30)
    finally:
        for client in clients:
            await client.stop()
    progress(
        f"two-hop aiokafka floor at {rate}/s: p50 {percentile(measured.two_hops, 50):.1f} ms, "
        f"p99 {percentile(measured.two_hops, 99):.1f} ms (one hop p99 {percentile(measured.first_hop, 99):.1f} ms)"
    )
    return measured


async def _new_topics(bootstrap: str, count: int) -> list[str]:
    """`count` fresh topics of 6 partitions, as the platform's."""
    topics = [f"floor.{uuid.uuid4().hex[:8]}" for _ in range(count)]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 6, 1) for topic in topics])
    finally:
        await admin.close()
    return topics
