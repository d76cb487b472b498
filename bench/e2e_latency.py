"""End to end: from a complaint's capture to its event on notifications.support.

Starts the whole stack (embedded PostgreSQL and broker unless settings point
elsewhere), has `hey` (a Go load generator, a process of its own, from
Debian's packages) post complaints at a steady rate, and times each one from
its CloudEvent `time` (stamped in the capture, before the row is written and
before the 201 is sent, so the figure is if anything longer than "201 → event")
to the moment its routed copy reaches an aiokafka consumer of
`notifications.support`. Also reads every service's resident memory idle and
after the load, and the raw aiokafka floor of the same run.

    python -m bench.e2e_latency [--rate 500] [--seconds 30]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Figure, Result, percentile, progress
from bench.floors import aiokafka_round_trip
from ops.stack import Stack, StackOptions

GOAL_P99_MS = 25.0
GOAL_RSS_MB = 150.0
WORKERS = 20  # hey's workers; each posts at rate / WORKERS per second


def resident_mb(stack: Stack) -> dict[str, float]:
    memory: dict[str, float] = {}
    for name, service in stack.services.items():
        if service.pid is not None:
            memory[name] = psutil.Process(service.pid).memory_info().rss / 2**20
    return memory


def require_hey() -> str:
    hey = shutil.which("hey")
    if hey is None:
        raise SystemExit("hey is not installed: `apt-get install -y hey` (Debian), then run again")
    return hey


class Load:
    """What hey reports: the rate it reached, the 201s, the POST latencies."""

    def __init__(self, output: str) -> None:
        self.output = output
        rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
        self.rate = float(rate.group(1)) if rate else 0.0
        self.statuses = {int(code): int(n) for code, n in re.findall(r"\[(\d+)\]\s+(\d+) responses", output)}
        self.post_ms = {int(q): float(s) * 1000 for q, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", output)}


@dataclass
class Latencies:
    """Per complaint (ms from its CloudEvent `time`): to `feedback.events` (the first hop), and to
    `notifications.support` (the whole way)."""

    first_hop: list[float] = field(default_factory=list)
    end_to_end: list[float] = field(default_factory=list)


async def drive(stack: Stack, *, rate: int, seconds: float) -> tuple[Latencies, Load, int]:
    """Post complaints at `rate`/s with hey; return the latencies, hey's report and the events that arrived."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers, fetch_max_wait_ms=5, enable_auto_commit=False
    )
    await consumer.start()
    topic, first_topic = "notifications.support", "feedback.events"
    partitions = [
        TopicPartition(name, p)
        for name in (topic, first_topic)
        for p in sorted(consumer.partitions_for_topic(name) or range(6))
    ]
    consumer.assign(partitions)
    await consumer.seek_to_end(*partitions)
    run = uuid.uuid4().hex[:8]
    customer, warm_up = f"bench-{run}", f"warm-up-{run}"
    measured = Latencies()
    latencies = measured.end_to_end
    warmed_up, done = asyncio.Event(), asyncio.Event()

    async def consume() -> None:
        while not done.is_set():
            for records in (await consumer.getmany(timeout_ms=100)).values():
                now = time.time()
                for record in records:
                    envelope = orjson.loads(record.value)
                    about = envelope.get("data", {}).get("customer_id")
                    if about == customer:
                        waited = (now - datetime.fromisoformat(envelope["time"]).timestamp()) * 1000
                        (latencies if record.topic == topic else measured.first_hop).append(waited)
                    elif about == warm_up and record.topic == topic:
                        warmed_up.set()

    def complaint(customer_id: str) -> bytes:
        return orjson.dumps(
            {
                "customer_id": customer_id,
                "channel": "email",
                "kind": "complaint",
                "text": "The delivery was two days late and nobody told me why.",
                "product": "router",
            }
        )

    reader = asyncio.create_task(consume())
    # Measure the pipeline running, not the stack starting (consumer groups forming, first metadata):
    # one complaint has to come through end to end first.
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {stack.admin_token()}"}) as client:
        response = await client.post(
            f"{stack.url('feedback')}/v1/feedback",
            content=complaint(warm_up),
            headers={"content-type": "application/json"},
        )
        response.raise_for_status()
    started = time.monotonic()
    await asyncio.wait_for(warmed_up.wait(), timeout=120)
    progress(f"e2e: the first complaint came through after {time.monotonic() - started:.1f} s; measuring")
    body = complaint(customer)
    with tempfile.NamedTemporaryFile(suffix=".json") as body_file:
        body_file.write(body)
        body_file.flush()
        hey = await asyncio.create_subprocess_exec(
            require_hey(),
            "-z",
            f"{seconds:g}s",
            "-c",
            str(WORKERS),
            "-q",
            f"{rate / WORKERS:g}",
            "-m",
            "POST",
            "-T",
            "application/json",
            "-H",
            f"Authorization: Bearer {stack.admin_token()}",
            "-D",
            body_file.name,
            f"{stack.url('feedback')}/v1/feedback",
            stdout=asyncio.subprocess.PIPE,
        )
        output, _ = await hey.communicate()
    load = Load(output.decode())
    accepted = load.statuses.get(201, 0)
    deadline = time.monotonic() + 20
    while len(latencies) < accepted and time.monotonic() < deadline:  # noqa: ASYNC110 - the consumer task fills it
        await asyncio.sleep(0.1)
    if len(latencies) < accepted:
        progress(f"e2e: only {len(latencies)} of {accepted} arrived within 20 s after the load")
    done.set()
    await reader
    await consumer.stop()
    other = {code: n for code, n in load.statuses.items() if code != 201}
    if other:
        progress(f"e2e: answers other than 201: {other}")
    return measured, load, len(latencies)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    result = Result("e2e_latency")
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as data_dir:
        options = StackOptions(
            data_dir=Path(data_dir), base_port=0, broker_port=0, environment={"CF_LOG_LEVEL": "WARNING"}
        )
        progress("e2e: starting the stack")
        with Stack(options, out=open("/dev/null", "w")) as stack:
            time.sleep(2)
            idle = resident_mb(stack)
            progress(f"e2e: posting {args.rate} complaints/s for {args.seconds:.0f} s")
            measured, load, arrived = asyncio.run(drive(stack, rate=args.rate, seconds=args.seconds))
            latencies = measured.end_to_end
            loaded = resident_mb(stack)
            progress("e2e: measuring the raw aiokafka floor at the same rate")
            floor = asyncio.run(aiokafka_round_trip(stack.bootstrap_servers, rate=args.rate, seconds=10))
    p50, p99, worst = percentile(latencies, 50), percentile(latencies, 99), max(latencies, default=float("nan"))
    floor_p50, floor_p99 = percentile(floor, 50), percentile(floor, 99)
    result.add(Figure("e2e latency p50", p50, "ms", floor=floor_p50, ratio=p50 / floor_p50 if floor_p50 else None))
    result.add(
        Figure(
            "e2e latency p99",
            p99,
            "ms",
            goal=f"≤ {GOAL_P99_MS:g} ms",
            met=p99 <= GOAL_P99_MS,
            floor=floor_p99,
            ratio=p99 / floor_p99 if floor_p99 else None,
        )
    )
    result.add(Figure("e2e latency max", worst, "ms"))
    # Where the time goes: the first of the two broker hops (capture → feedback.events, through the
    # feedback outbox relay), against the same floor.
    for quantile in (50, 99):
        first = percentile(measured.first_hop, quantile)
        floor_q = percentile(floor, quantile)
        result.add(
            Figure(
                f"first hop (capture → feedback.events) p{quantile}",
                first,
                "ms",
                floor=floor_q,
                ratio=first / floor_q if floor_q else None,
            )
        )
    accepted = load.statuses.get(201, 0)
    result.add(Figure("complaints accepted", accepted, "count"))
    result.add(
        Figure(
            "complaints posted per second (reached)",
            load.rate,
            "req/s",
            goal=f"= {args.rate}",
            met=load.rate >= 0.95 * args.rate,
        )
    )
    for quantile in (50, 99):
        if quantile in load.post_ms:
            result.add(Figure(f"POST /v1/feedback p{quantile} (hey)", load.post_ms[quantile], "ms"))
    result.add(
        Figure(
            "complaints arrived on notifications.support", arrived, "count", goal="= accepted", met=arrived == accepted
        )
    )
    for name in idle:
        result.add(
            Figure(f"{name} RSS idle", idle[name], "MB", goal=f"≤ {GOAL_RSS_MB:g} MB", met=idle[name] <= GOAL_RSS_MB)
        )
        result.add(
            Figure(
                f"{name} RSS after load",
                loaded[name],
                "MB",
                goal=f"≤ {GOAL_RSS_MB:g} MB",
                met=loaded[name] <= GOAL_RSS_MB,
            )
        )
    result.samples = {"e2e_ms": latencies, "first_hop_ms": measured.first_hop, "floor_aiokafka_ms": floor}
    result.notes.append(
        f"{args.rate} complaints/s for {args.seconds:g} s from hey ({WORKERS} workers, keep-alive), one customer; "
        "latency = arrival at an aiokafka consumer of notifications.support − the event's `time` (stamped in the "
        "capture, before the 201); floor: raw aiokafka produce→consume at the same rate on the same broker; "
        "hey, the stack and this consumer share the machine's 2 cores"
    )
    path = result.write()
    progress(f"e2e: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms (floor p99 {floor_p99:.1f} ms) → {path}")


if __name__ == "__main__":
    main()
