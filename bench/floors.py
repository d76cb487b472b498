"""Floors measured in the same run as the platform's figures.

- bare FastAPI: uvicorn (uvloop, httptools) returning a small JSON to a GET;
- raw aiokafka: produce with acks=all and consume, the least a Kafka hop costs.
(The FastAPI + asyncpg insert floor lives in `bench/floor_app.py`.)
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from fastapi import FastAPI

from bench.common import WrkRun, percentile, progress, run_wrk
from ops.embedded import free_port, wait_for_port

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
    topic = f"floor.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, 6, 1)])
    await admin.close()
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
