"""The due-moment scheduler under 100,000 open commitments spread over the next hour.

Starts the commitments service as its own process (uvicorn, with its embedded
PostgreSQL and broker unless settings point elsewhere), bulk-inserts the open
commitments straight into its table with SQL, announces them once, and then
watches `commitments.events` with an aiokafka consumer. Every due-soon and
overdue moment that falls in the observed window is timed twice:

- outbox: the event's CloudEvent `time` (stamped when the scheduler writes the
  outbox row, in the transaction that changes the status) minus its moment;
- kafka: the wall-clock moment the consumer received it minus its moment.

The service process's CPU seconds are read with psutil while it sleeps with
every commitment armed but none due (idle), and over the observed window.

    python -m bench.commitments_scheduler [--open 100000] [--observe-seconds 300] [--lead-seconds 60]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import orjson
import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition

from bench.common import Figure, Result, percentile, progress
from ops.stack import Stack, StackOptions
from shared.db import asyncpg_dsn

GOAL_LATENESS_S = 1.0
DUE_TYPES = ("commitment.due_soon", "commitment.overdue")

# Spread `count` due dates evenly over [first_due, last_due]; all straight in SQL.
BULK_INSERT = """
INSERT INTO commitment (id, customer_id, customer_kind, title, description, owner_id, department, due_at,
    due_soon_at, source_type, source_id, status, next_event, next_event_at, created_at, updated_at)
SELECT gen_random_uuid(), $1 || (i % 1000), 'external', 'Call the customer back', NULL, 'owner-' || (i % 200),
    (ARRAY['sales', 'support', 'production', 'management'])[1 + i % 4], due, due - $5 * interval '1 second',
    'manual', NULL, 'open', 'due_soon', due - $5 * interval '1 second', now(), now()
FROM generate_series(0, $2 - 1) AS i,
    LATERAL (SELECT $3::timestamptz + (($4::timestamptz - $3::timestamptz) * i / greatest($2 - 1, 1)) AS due) AS d
"""
MOMENTS_IN = """
SELECT count(*) FILTER (WHERE due_soon_at >= $1 AND due_soon_at < $2)
     + count(*) FILTER (WHERE due_at >= $1 AND due_at < $2)
FROM commitment WHERE customer_id LIKE $3
"""


@dataclass
class Observed:
    outbox_lateness: list[float] = field(default_factory=list)
    kafka_lateness: list[float] = field(default_factory=list)
    seen: Counter[tuple[str, str]] = field(default_factory=Counter)
    messages: int = 0


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


async def prometheus_value(url: str, name: str) -> float:
    async with httpx.AsyncClient(timeout=5) as client:
        text = (await client.get(f"{url}/metrics")).text
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " "))


def moment_of(envelope: dict[str, object]) -> datetime:
    data = envelope["data"]
    assert isinstance(data, dict)
    key = "due_soon_at" if envelope["type"] == "commitment.due_soon" else "due_at"
    return datetime.fromisoformat(str(data[key]).replace("Z", "+00:00"))


async def observe(
    stack: Stack, *, window: tuple[datetime, datetime], prefix: str, grace: float, observed: Observed
) -> None:
    """Read commitments.events until the window has closed (plus `grace`), timing every due event in it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.bootstrap_servers, fetch_max_wait_ms=5, enable_auto_commit=False
    )
    await consumer.start()
    try:
        topic = "commitments.events"
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or range(6))]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        stop_at = window[1].timestamp() + grace
        while time.time() < stop_at:
            for records in (await consumer.getmany(timeout_ms=100)).values():
                received = time.time()
                for record in records:
                    envelope = orjson.loads(record.value)
                    if envelope["type"] not in DUE_TYPES or not envelope["customerid"].startswith(prefix):
                        continue
                    observed.messages += 1
                    moment = moment_of(envelope)
                    if not window[0] <= moment < window[1]:
                        continue
                    key = (envelope["subject"], envelope["type"])
                    observed.seen[key] += 1
                    if observed.seen[key] > 1:
                        continue
                    written = datetime.fromisoformat(envelope["time"].replace("Z", "+00:00"))
                    observed.outbox_lateness.append((written - moment).total_seconds())
                    observed.kafka_lateness.append(received - moment.timestamp())
    finally:
        await consumer.stop()


async def run(stack: Stack, args: argparse.Namespace, result: Result) -> None:
    service = stack.services["commitments"]
    assert service.pid is not None
    dsn = asyncpg_dsn(stack.database_urls["commitments"])
    prefix = f"bench-{uuid.uuid4().hex[:8]}-"
    conn = await asyncpg.connect(dsn)
    try:
        now = time.time()
        first_due = datetime.fromtimestamp(now + args.idle_seconds + args.lead_seconds + 5, UTC)
        last_due = datetime.fromtimestamp(now + args.spread_seconds, UTC)
        started = time.monotonic()
        await conn.execute(BULK_INSERT, prefix, args.open, first_due, last_due, float(args.lead_seconds))
        await conn.execute("ANALYZE commitment")
        progress(f"scheduler: {args.open:,} open commitments inserted in {time.monotonic() - started:.1f} s")
        # One announcement stands in for the creates' NOTIFYs the bulk insert skipped.
        first_moment = (first_due.timestamp()) - args.lead_seconds
        await conn.execute("SELECT pg_notify('commitment_schedule', $1)", str(first_moment))
        window_start = datetime.fromtimestamp(first_moment, UTC)
        window = (window_start, datetime.fromtimestamp(first_moment + args.observe_seconds, UTC))
        expected = await conn.fetchval(MOMENTS_IN, window[0], window[1], prefix + "%")
    finally:
        await conn.close()

    wake_ups_before = await prometheus_value(service.url, "cf_commitments_scheduler_wake_ups_total")
    idle_from = cpu_seconds(service.pid)
    idle_started = time.monotonic()
    observed = Observed()
    reader = asyncio.create_task(
        observe(stack, window=window, prefix=prefix, grace=args.grace_seconds, observed=observed)
    )
    await asyncio.sleep(max(0.0, first_moment - time.time() - 0.5))
    idle_cpu = cpu_seconds(service.pid) - idle_from
    idle_seconds = time.monotonic() - idle_started
    wake_ups_idle = await prometheus_value(service.url, "cf_commitments_scheduler_wake_ups_total") - wake_ups_before
    progress(
        f"scheduler: idle {idle_seconds:.1f} s with every commitment armed: {idle_cpu:.3f} CPU s, "
        f"{wake_ups_idle:.0f} wake-ups; observing {args.observe_seconds:.0f} s ({expected:,} moments)"
    )
    window_from = cpu_seconds(service.pid)
    wake_ups_from = await prometheus_value(service.url, "cf_commitments_scheduler_wake_ups_total")
    while not reader.done():
        await asyncio.sleep(min(30.0, max(0.1, window[1].timestamp() - time.time())))
        if time.time() < window[1].timestamp():
            progress(f"scheduler: {len(observed.outbox_lateness):,}/{expected:,} moments fired so far")
        else:
            break
    window_cpu = cpu_seconds(service.pid) - window_from
    wake_ups = await prometheus_value(service.url, "cf_commitments_scheduler_wake_ups_total") - wake_ups_from
    await reader

    fired = len(observed.outbox_lateness)
    duplicates = sum(count - 1 for count in observed.seen.values() if count > 1)
    outbox_ms = [1000 * s for s in observed.outbox_lateness]
    kafka_ms = [1000 * s for s in observed.kafka_lateness]
    goal = f"≤ {GOAL_LATENESS_S * 1000:g} ms"
    for label, values in (("outbox", outbox_ms), ("kafka", kafka_ms)):
        p50, p99, worst = percentile(values, 50), percentile(values, 99), max(values, default=float("nan"))
        result.add(Figure(f"lateness at {label} p50", p50, "ms"))
        result.add(Figure(f"lateness at {label} p99", p99, "ms", goal=goal, met=p99 <= GOAL_LATENESS_S * 1000))
        result.add(Figure(f"lateness at {label} max", worst, "ms", goal=goal, met=worst <= GOAL_LATENESS_S * 1000))
        progress(f"scheduler: lateness at {label}: p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms")
    result.add(Figure("open commitments", args.open, "count"))
    result.add(Figure("moments due in the window", expected, "count"))
    result.add(Figure("moments fired in the window", fired, "count", goal="= due", met=fired == expected))
    result.add(Figure("duplicate events", duplicates, "count", goal="0", met=duplicates == 0))
    result.add(Figure("events in the window", fired / args.observe_seconds, "events/s"))
    result.add(Figure("service CPU while idle (all armed, none due)", idle_cpu, "CPU s"))
    result.add(Figure("service CPU share while idle", 100 * idle_cpu / idle_seconds, "%"))
    result.add(Figure("scheduler wake-ups while idle", wake_ups_idle, "count"))
    result.add(Figure("service CPU over the window", window_cpu, "CPU s"))
    result.add(Figure("service CPU share over the window", 100 * window_cpu / args.observe_seconds, "%"))
    result.add(Figure("service CPU per event", 1000 * window_cpu / fired if fired else float("nan"), "ms"))
    result.add(Figure("scheduler wake-ups per event", wake_ups / fired if fired else float("nan"), "ratio"))
    result.samples = {"lateness_outbox_ms": outbox_ms, "lateness_kafka_ms": kafka_ms}
    result.notes += [
        f"{args.open:,} open commitments, due dates evenly over the next {args.spread_seconds:g} s, "
        f"due-soon lead {args.lead_seconds:g} s; observed {args.observe_seconds:g} s of moments after "
        f"{idle_seconds:.0f} s idle",
        "lateness at outbox = CloudEvent `time` (stamped as the scheduler writes the outbox row with the status "
        "change) minus the moment; lateness at kafka = wall clock when an aiokafka consumer received it minus "
        "the moment (includes the outbox relay and the broker)",
        "service CPU = user + system seconds of the whole commitments process (scheduler, outbox relay, "
        "Kafka producer, HTTP server), read with psutil",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--open", type=int, default=100_000, help="open commitments to arm")
    parser.add_argument("--spread-seconds", type=float, default=3600.0, help="due dates spread over this long")
    parser.add_argument("--observe-seconds", type=float, default=300.0, help="window of moments to time")
    parser.add_argument("--lead-seconds", type=float, default=60.0, help="CF_COMMITMENTS_DUE_SOON_LEAD_SECONDS")
    parser.add_argument("--idle-seconds", type=float, default=15.0, help="armed but nothing due for this long first")
    parser.add_argument("--grace-seconds", type=float, default=3.0, help="keep reading this long after the window")
    args = parser.parse_args()
    if args.observe_seconds + args.idle_seconds + args.lead_seconds >= args.spread_seconds:
        parser.error("--spread-seconds must exceed --observe-seconds + --idle-seconds + --lead-seconds")
    result = Result("commitments_scheduler")
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as data_dir:
        options = StackOptions(
            data_dir=Path(data_dir),
            base_port=0,
            broker_port=0,
            services=["commitments"],
            environment={"CF_LOG_LEVEL": "WARNING", "CF_COMMITMENTS_DUE_SOON_LEAD_SECONDS": str(args.lead_seconds)},
        )
        progress("scheduler: starting the commitments service")
        with contextlib.ExitStack() as cleanup:
            stack = cleanup.enter_context(Stack(options, out=cleanup.enter_context(open("/dev/null", "w"))))
            asyncio.run(run(stack, args, result))
    path = result.write()
    progress(f"scheduler: results in {path}")


if __name__ == "__main__":
    main()
