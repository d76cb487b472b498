"""Routing throughput: events from the three source topics into inboxes, department topics and webhooks.

Starts an embedded PostgreSQL and broker, then, before the notifications
service runs, fills the three source topics with a backlog of real
CloudEvents (a mix of every routed type, about 1.5 departments per event) and
gives each department one webhook subscription to a local receiver (a
separate uvicorn process answering 204). Then the service starts as its own
uvicorn process and drains the backlog; the benchmark watches its database.

- routed events/s: events ÷ (last department message published − first event
  handled): inbox rows written and every republished CloudEvent on its
  `notifications.<department>` topic;
- webhook deliveries/s: deliveries ÷ (last delivered − first attempt), while
  the routing runs beside it in the same process;
- floor, same run and broker: a raw aiokafka consumer that reads the same
  backlog and produces each message to another topic (acks=all).

    python -m bench.notifications_routing [--events 30000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bench.common import Figure, Result, infrastructure, process_ids, progress
from ops.embedded import free_port, wait_for_port
from ops.stack import StackOptions
from services.notifications.webhooks import new_secret
from shared import catalogue
from shared.catalogue import EventSpec
from shared.db import asyncpg_dsn
from shared.events import CONTENT_TYPE, OutboxRecord, build_event

GOAL_ROUTED = 5_000.0
GOAL_DELIVERIES = 1_000.0
DEPARTMENTS = ("sales", "support", "production", "management")
ROUTER_GROUP = "cf-notifications-router"


async def receiver_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A webhook receiver that reads the body and answers 204."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})


# --- the backlog -----------------------------------------------------------------------------


def _feedback(customer_id: str, kind: str, rating: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "channel": "email",
        "kind": kind,
        "text": "The delivery was late and the box was damaged; please call me back about a replacement.",
        "rating": rating,
        "product": "widget",
        "tags": ["delivery"],
        "occurred_at": "2026-11-22T10:00:00Z",
        "status": "new",
        "sentiment": {"score": -0.4, "label": "negative"},
        "themes": ["delivery"],
        "created_at": "2026-11-22T10:00:01Z",
        "updated_at": "2026-11-22T10:00:01Z",
    }


def _commitment(customer_id: str, status: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "title": "Replace the damaged widget",
        "description": "Ship a replacement and call the customer",
        "owner_id": "owner-7",
        "department": random.choice(DEPARTMENTS),
        "due_at": "2026-12-01T10:00:00Z",
        "status": status,
        "renegotiations": 0,
        "history": [],
        "source": {"type": "feedback", "id": str(uuid.uuid4())},
        "created_at": "2026-11-22T10:00:01Z",
        "updated_at": "2026-11-22T10:00:01Z",
    }


def _expectation(customer_id: str, status: str, capability: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "meeting_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "status": status,
        "version": 1,
        "statement": "Deliveries must arrive within two days",
        "restatement": "Delivery in at most 48 hours from order",
        "priority": "high",
        "key_point": True,
        "measure": "p95 delivery time < 48h",
        "capability": capability,
        "question_id": None,
    }


# (weight, spec, data factory, departments it reaches)
MIX: list[tuple[int, EventSpec, Any, int]] = [
    (30, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "complaint"), 2),
    (15, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "compliment"), 1),
    (10, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "suggestion"), 1),
    (5, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "survey_response", {"scale": "nps", "value": 7}), 0),
    (10, catalogue.MEETING_RECORDED, lambda c: {"id": str(uuid.uuid4()), "customer_id": c, "notes": "visit"}, 1),
    (10, catalogue.EXPECTATION_CONFIRMED, lambda c: _expectation(c, "confirmed", "can_meet"), 2),
    (10, catalogue.COMMITMENT_CREATED, lambda c: _commitment(c, "open"), 1),
    (10, catalogue.COMMITMENT_OVERDUE, lambda c: _commitment(c, "overdue"), 2),
]


def backlog(count: int) -> tuple[list[OutboxRecord], int]:
    """`count` events of the mix, and how many (event, department) pairs they make."""
    weights = [m[0] for m in MIX]
    records: list[OutboxRecord] = []
    pairs = 0
    for index in range(count):
        _, spec, make, departments = random.choices(MIX, weights)[0]
        customer_id = f"bench-{index % 2000}"
        data = make(customer_id)
        if spec is catalogue.COMMITMENT_OVERDUE and data["department"] == "management":
            departments = 1
        records.append(build_event(spec, data=data, subject=data["id"], customer_id=customer_id))
        pairs += departments
    return records, pairs


async def produce(bootstrap: str, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=262_144)
    await producer.start()
    try:
        headers = [("content-type", CONTENT_TYPE.encode())]
        for start in range(0, len(records), 2000):
            sent = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for topic, key, value in records[start : start + 2000]
            ]
            await asyncio.gather(*sent)
    finally:
        await producer.stop()


# --- the floor -------------------------------------------------------------------------------


async def consume_produce_floor(bootstrap: str, records: list[OutboxRecord]) -> float:
    """Messages/s a raw aiokafka consumer reads and republishes (acks=all), nothing else."""
    source, target = f"floor.in.{uuid.uuid4().hex[:6]}", f"floor.out.{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(source, 6, 1), NewTopic(target, 6, 1)])
    await admin.close()
    await produce(bootstrap, [(source, r.key.encode(), r.value) for r in records])
    consumer = AIOKafkaConsumer(
        source,
        bootstrap_servers=bootstrap,
        group_id=f"floor-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_poll_records=500,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await consumer.start()
    await producer.start()
    try:
        done = 0
        started: float | None = None
        while done < len(records):
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if started is None and batches:
                started = time.perf_counter()
            sent = [await producer.send(target, value=r.value, key=r.key) for rs in batches.values() for r in rs]
            await asyncio.gather(*sent)
            if batches:
                await consumer.commit()
            done += len(sent)
        assert started is not None
        return len(records) / (time.perf_counter() - started)
    finally:
        await consumer.stop()
        await producer.stop()


# --- the run ---------------------------------------------------------------------------------


async def subscribe_every_department(dsn: str, url: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO subscription (id, department, url, event_types, secret, created_by) "
            "VALUES ($1, $2, $3, '{}', $4, 'bench')",
            [(uuid.uuid4(), d, url, new_secret()) for d in DEPARTMENTS],
        )
    finally:
        await conn.close()


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds of each process and its children."""
    used: dict[str, float] = {}
    for name, pid in pids.items():
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(pid)
            total = 0.0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
            used[name] = total
    return used


_ROUTING_STATE = (
    "SELECT (SELECT count(*) FROM processed_event WHERE consumer = $1), EXISTS (SELECT 1 FROM outbox_event)"
)
_ROUTED_COUNTS = (
    "SELECT (SELECT count(*) FROM notification), (SELECT count(*) FROM webhook_delivery WHERE status = 'delivered')"
)
_DELIVERING = "SELECT EXISTS (SELECT 1 FROM webhook_delivery WHERE status = 'pending')"


async def watch(
    dsn: str, *, events: int, pids: dict[str, int], give_up_after: float
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Poll the service's database until every event is routed, published and delivered."""
    conn = await asyncpg.connect(dsn)
    cpu = {"start": cpu_seconds(pids)}
    seen: dict[str, float] = {}
    deadline = time.monotonic() + give_up_after
    try:
        # Cheap questions while the service works (this connection shares the machine with it); counts after.
        while "routed" not in seen:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not routed within {give_up_after:.0f} s")
            processed, publishing = await conn.fetchrow(_ROUTING_STATE, ROUTER_GROUP)
            if "first" not in cpu and processed > 0:
                # From here on the process routes (its start-up, imports included, is behind it).
                cpu["first"] = cpu_seconds(pids)
            if processed >= events and "consumed" not in seen:
                seen["consumed"] = time.time()
            if processed >= events and not publishing:
                seen["routed"] = time.time()
                cpu["routed"] = cpu_seconds(pids)
            else:
                await asyncio.sleep(0.1)
        seen["notifications"], seen["delivered_while_routing"] = await conn.fetchrow(_ROUTED_COUNTS)
        progress(f"routing: all {events:,} events routed into {seen['notifications']:,.0f} notifications and published")
        while await conn.fetchval(_DELIVERING):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not delivered within {give_up_after:.0f} s")
            await asyncio.sleep(0.1)
        seen["delivered"] = time.time()
        cpu["delivered"] = cpu_seconds(pids)
        first_handled, first_attempt = await conn.fetchrow(
            """
            SELECT extract(epoch FROM (SELECT min(processed_at) FROM processed_event WHERE consumer = $1)),
                   extract(epoch FROM (SELECT min(attempted_at) FROM delivery_attempt))
            """,
            ROUTER_GROUP,
        )
        seen["first_handled"] = float(first_handled)
        seen["first_attempt"] = float(first_attempt) if first_attempt is not None else seen["delivered"]
        seen["attempts"] = float(await conn.fetchval("SELECT count(*) FROM delivery_attempt"))
        seen["delivered_count"] = float(
            await conn.fetchval("SELECT count(*) FROM webhook_delivery WHERE status = 'delivered'")
        )
    finally:
        await conn.close()
    return seen, cpu


def run(args: argparse.Namespace, result: Result) -> None:
    load_before = os.getloadavg()[0]
    records, pairs = backlog(args.events)
    progress(f"routing: {args.events:,} events make {pairs:,} (event, department) pairs")
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as data_dir, contextlib.ExitStack() as cleanup:
        options = StackOptions(
            data_dir=Path(data_dir),
            base_port=0,
            broker_port=0,
            services=["notifications"],
            environment={
                "CF_LOG_LEVEL": "WARNING",
                "CF_WEBHOOK_ALLOW_PRIVATE": "true",
                "CF_TOPIC_PREFIX": "bench.",
                "CF_WEBHOOKS_IN_PROCESS": str(not args.webhook_worker).lower(),
            },
        )
        stack = infrastructure(options, cleanup)
        bootstrap = stack.bootstrap_servers
        dsn = asyncpg_dsn(stack.database_urls["notifications"])

        floor = asyncio.run(consume_produce_floor(bootstrap, records))
        progress(f"floor: raw aiokafka consume + produce {floor:,.0f} messages/s")

        port = free_port()
        receiver = subprocess.Popen(
            [
                *(sys.executable, "-m", "uvicorn", "bench.notifications_routing:receiver_app", "--port", str(port)),
                *("--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning"),
            ]
        )
        cleanup.callback(receiver.wait, 10)
        cleanup.callback(receiver.terminate)
        wait_for_port("127.0.0.1", port)
        if args.no_webhooks:
            pairs = 0
        else:
            asyncio.run(subscribe_every_department(dsn, f"http://127.0.0.1:{port}/hook"))
        asyncio.run(produce(bootstrap, [(f"bench.{r.topic}", r.key.encode(), r.value) for r in records]))
        progress("routing: backlog written; starting the notifications service")

        if args.webhook_worker:
            worker = subprocess.Popen(
                [sys.executable, "-m", "services.notifications.webhook_worker"],
                env=stack.service_environment("notifications"),
            )
            cleanup.callback(worker.wait, 10)
            cleanup.callback(worker.terminate)
            pids_of_workers = {"webhook worker": worker.pid}
        else:
            pids_of_workers = {}
        stack.start_services()
        pids = {
            **process_ids(stack, "notifications"),
            "receiver": receiver.pid,
            **pids_of_workers,
        }
        seen, cpu = asyncio.run(watch(dsn, events=args.events, pids=pids, give_up_after=args.timeout))

    load_after = os.getloadavg()[0]
    routed = args.events / (seen["routed"] - seen["first_handled"])
    delivered = pairs / (seen["delivered"] - seen["first_attempt"]) if pairs else float("nan")
    progress(f"routing: {routed:,.0f} events/s routed, {delivered:,.0f} webhook deliveries/s (floor {floor:,.0f}/s)")
    result.add(
        Figure(
            "routed events/s (inbox + department topics + webhook deliveries queued)",
            routed,
            "events/s",
            goal=f"≥ {GOAL_ROUTED:,.0f}",
            met=routed >= GOAL_ROUTED,
            floor=floor,
            ratio=routed / floor,
        )
    )
    result.add(
        Figure(
            "webhook deliveries/s to a local receiver",
            delivered,
            "deliveries/s",
            goal=f"≥ {GOAL_DELIVERIES:,.0f}",
            met=delivered >= GOAL_DELIVERIES,
            floor=floor,
            ratio=delivered / floor,
        )
    )
    result.add(Figure("events", args.events, "count"))
    result.add(Figure("notifications (event, department pairs)", seen["notifications"], "count"))
    result.add(Figure("webhook attempts", seen["attempts"], "count", goal=f"= {pairs}", met=seen["attempts"] == pairs))
    result.add(
        Figure(
            "webhook deliveries delivered",
            seen["delivered_count"],
            "count",
            goal=f"= {pairs}",
            met=seen["delivered_count"] == pairs,
        )
    )
    result.add(Figure("webhook deliveries made while routing", seen["delivered_while_routing"], "count"))
    for name in cpu["start"]:
        total = cpu["delivered"][name] - cpu["start"][name]
        routing = cpu["routed"][name] - cpu["first"][name]
        result.add(Figure(f"{name} CPU from start to last delivery", total, "CPU s"))
        result.add(Figure(f"{name} CPU per routed event while routing", routing / args.events * 1e6, "µs"))
        progress(
            f"cpu: {name} {routing:.1f} s from first event handled until routed "
            f"({routing / args.events * 1e6:.0f} µs per event), {total:.1f} s from start until delivered"
        )
    progress(f"routing: {seen['delivered_while_routing']:,.0f} webhook deliveries made while routing")
    progress(
        f"routing: every event consumed after {seen['consumed'] - seen['first_handled']:.2f} s, "
        f"every copy published after {seen['routed'] - seen['first_handled']:.2f} s"
    )
    result.add(
        Figure("wall time from first event handled to last delivery", seen["delivered"] - seen["first_handled"], "s")
    )
    result.notes += [
        f"{args.events:,} events pre-filled across feedback, expectations and commitments topics (mix of every "
        f"routed type, {pairs / args.events:.2f} departments per event); one webhook subscription per department, "
        "all to one local uvicorn receiver answering 204",
        "routed events/s = events ÷ (moment the last department message left the outbox − first event handled); "
        "webhook deliveries/s = deliveries ÷ (last delivered − first attempt), running beside the routing",
        "floor = a raw aiokafka consumer reading the same backlog and producing every message to another topic "
        "(acks=all), same broker, same run",
        "webhooks sent by a separate `python -m services.notifications.webhook_worker` process "
        "(CF_WEBHOOKS_IN_PROCESS=false on the service, --webhook-worker)"
        if args.webhook_worker
        else "webhooks sent by the service process itself, as deployed by default",
        f"machine: {psutil.cpu_count()} cores shared by PostgreSQL, the broker, the service, the receiver and "
        f"this benchmark; 1-minute load average {load_before:.2f} before and {load_after:.2f} after (other work "
        "on the machine slows every figure, the floor included)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="events in the backlog")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--no-webhooks", action="store_true", help="diagnosis: route without any subscription")
    parser.add_argument(
        "--webhook-worker",
        action="store_true",
        help="send webhooks from a webhook worker process (CF_WEBHOOKS_IN_PROCESS=false) instead of the service "
        "process, its default",
    )
    args = parser.parse_args()
    result = Result("notifications_routing")
    run(args, result)
    if args.no_webhooks:
        progress("routing: a diagnostic run without webhooks; results not written")
        return
    path = result.write()
    progress(f"routing: results in {path}")


if __name__ == "__main__":
    main()
