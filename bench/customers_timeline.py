"""Customers: the timeline consumer's rate, and a timeline page's p99 against a bare SELECT.

Starts an embedded PostgreSQL and broker and, before the customers service
runs, fills the three source topics with a backlog of real CloudEvents (every
type that makes a timeline entry, 2,000 customers). Then:

- consumer events/s: the service (its own uvicorn process) drains the backlog
  into timelines; events ÷ (every event committed − first event handled),
  watched in its database. Floor, same run and broker: a raw aiokafka
  consumer of its own group reading the same backlog and committing its
  offsets after each batch, nothing else;
- timeline page p99: one customer with 10,000 events (written by the same
  consumer), `GET /v1/customers/{id}/timeline?limit=50` (the first page, and
  a page 5,000 entries deep through its cursor) under wrk with one
  connection; floor, same run and database: the very statement the
  repository sends for that page (compiled from it, so the same plan),
  executed one after another on one asyncpg connection.

    python -m bench.customers_timeline [--events 30000] [--deep 10000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import psutil
from aiokafka import AIOKafkaConsumer
from sqlalchemy.engine import make_url

from bench.common import Figure, Result, infrastructure, percentile, process_ids, progress, run_wrk
from bench.notifications_routing import cpu_seconds, produce
from ops.stack import StackOptions
from services.customers.repository import timeline_page_statement
from shared import catalogue
from shared.catalogue import EventSpec
from shared.db import asyncpg_dsn
from shared.events import OutboxRecord, build_event
from shared.pagination import encode_cursor

GOAL_EVENTS = 5_000.0
GOAL_PAGE_RATIO = 3.0
PAGE_LIMIT = 50
DEEP_OFFSET = 5_000
CUSTOMERS = 2_000
SAMPLES_KEPT = 5_000
TIMELINE_GROUP = "cf-customers-timeline"
TOPIC_PREFIX = "bench."

# --- the backlog -----------------------------------------------------------------------------


def _at(days_ago: float = 0.0) -> str:
    return (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()


def _feedback(customer_id: str, kind: str, status: str = "new", rating: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "channel": random.choice(["email", "phone", "web", "meeting"]),
        "kind": kind,
        "text": "The delivery was late and the box was damaged; please call me back about a replacement.",
        "rating": rating,
        "product": "widget",
        "tags": ["delivery"],
        "occurred_at": _at(1),
        "status": status,
        "previous_status": "new" if status != "new" else None,
        "sentiment": {"score": -0.4, "label": "negative"},
        "themes": ["delivery"],
        "verdict": {"accepted": False, "fairness": 2, "comment": "Still broken.", "given_by": "customer"}
        if status == "reopened"
        else None,
        "created_at": _at(1),
        "updated_at": _at(),
    }


def _meeting(customer_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "held_at": _at(2),
        "attendees": [
            {"staff_id": "s-1", "name": "Ana Ruiz", "department": "sales"},
            {"staff_id": "s-2", "name": "Ben Okafor", "department": "production"},
        ],
        "customer_participants": [{"name": "Dana Whitfield", "role": "buyer"}],
        "question_ids": [],
        "notes": "Quarterly visit.",
    }


def _expectation(customer_id: str, status: str, capability: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "meeting_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "status": status,
        "version": 1,
        "statement": "Deliveries must arrive within two days, or we lose our own customers' trust.",
        "restatement": "Delivery in at most 48 hours from order",
        "priority": "high",
        "key_point": True,
        "measure": "p95 delivery time < 48h",
        "capability": capability,
        "question_id": str(uuid.uuid4()),
        "updated_at": _at(),
    }


def _commitment(customer_id: str, status: str, kept: bool | None = None) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "kind": "promise",
        "title": "Replace the damaged widget",
        "description": "Ship a replacement and call the customer",
        "owner_id": "owner-7",
        "department": "support",
        "due_at": _at(-3),
        "previous_due_at": _at(-1),
        "status": status,
        "kept": kept,
        "broken_because": "overdue" if kept is False else None,
        "renegotiations": 0,
        "history": [],
        "source": {"type": "feedback", "id": str(uuid.uuid4())},
        "created_at": _at(1),
        "updated_at": _at(),
    }


# (weight, spec, data factory): every type that makes a timeline entry, roughly as often as it happens.
MIX: list[tuple[int, EventSpec, Callable[[str], dict[str, Any]]]] = [
    (20, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "complaint")),
    (8, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "compliment")),
    (6, catalogue.FEEDBACK_RECEIVED, lambda c: _feedback(c, "survey_response", rating={"scale": "nps", "value": 7})),
    (10, catalogue.FEEDBACK_STATUS_CHANGED, lambda c: _feedback(c, "complaint", "acknowledged")),
    (2, catalogue.FEEDBACK_VERDICT_GIVEN, lambda c: _feedback(c, "complaint", "reopened")),
    (6, catalogue.MEETING_RECORDED, _meeting),
    (6, catalogue.EXPECTATION_RECORDED, lambda c: _expectation(c, "recorded", "can_meet")),
    (5, catalogue.EXPECTATION_CONFIRMED, lambda c: _expectation(c, "confirmed", "can_meet")),
    (3, catalogue.EXPECTATION_GAP_IDENTIFIED, lambda c: _expectation(c, "recorded", "partial")),
    (12, catalogue.COMMITMENT_CREATED, lambda c: _commitment(c, "open")),
    (6, catalogue.COMMITMENT_DUE_SOON, lambda c: _commitment(c, "due_soon")),
    (4, catalogue.COMMITMENT_OVERDUE, lambda c: _commitment(c, "overdue", kept=False)),
    (8, catalogue.COMMITMENT_MET, lambda c: _commitment(c, "met_on_time", kept=True)),
    (2, catalogue.COMMITMENT_RESCHEDULED, lambda c: _commitment(c, "open")),
    (2, catalogue.COMMITMENT_CANCELLED, lambda c: _commitment(c, "cancelled")),
]


def backlog(count: int, customer: Callable[[int], str]) -> list[OutboxRecord]:
    weights = [m[0] for m in MIX]
    records = []
    for index in range(count):
        _, spec, make = random.choices(MIX, weights)[0]
        customer_id = customer(index)
        data = make(customer_id)
        records.append(build_event(spec, data=data, subject=data["id"], customer_id=customer_id))
    return records


def on_topics(records: list[OutboxRecord]) -> list[tuple[str, bytes, bytes]]:
    return [(TOPIC_PREFIX + r.topic, r.key.encode(), r.value) for r in records]


# --- the consumer and its floor ----------------------------------------------------------------


async def consume_floor(bootstrap: str, events: int) -> float:
    """Messages/s a raw aiokafka consumer of its own group reads from the three topics, committing each batch."""
    consumer = AIOKafkaConsumer(
        *(TOPIC_PREFIX + topic for topic in catalogue.ROUTED_SOURCE_TOPICS),
        bootstrap_servers=bootstrap,
        group_id=f"floor-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=10,
        max_poll_records=500,
    )
    await consumer.start()
    try:
        done = 0
        started: float | None = None
        while done < events:
            batches = await consumer.getmany(timeout_ms=500, max_records=500)
            if started is None and batches:
                started = time.perf_counter()
            if batches:
                await consumer.commit()
            done += sum(len(records) for records in batches.values())
        assert started is not None
        return events / (time.perf_counter() - started)
    finally:
        await consumer.stop()


_HANDLED = "SELECT count(*) FROM processed_event WHERE consumer = $1"


async def watch_consumer(
    dsn: str, *, events: int, pids: dict[str, int], running: Callable[[], bool], give_up_after: float
) -> dict[str, Any]:
    """Poll the service's database until every event of the backlog is committed into timelines."""
    conn = await asyncpg.connect(dsn)
    seen: dict[str, Any] = {"cpu_start": cpu_seconds(pids)}
    deadline = time.monotonic() + give_up_after
    try:
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError(f"not in timelines within {give_up_after:.0f} s")
            if not running():
                raise SystemExit("the customers service exited")
            handled = await conn.fetchval(_HANDLED, TIMELINE_GROUP)
            if "cpu_first" not in seen and handled > 0:
                seen["cpu_first"] = cpu_seconds(pids)
            if handled >= events:
                seen["committed"] = time.time()
                seen["cpu_committed"] = cpu_seconds(pids)
                break
            await asyncio.sleep(0.05)
        first = await conn.fetchval(
            "SELECT extract(epoch FROM min(processed_at)) FROM processed_event WHERE consumer = $1", TIMELINE_GROUP
        )
        seen["first_handled"] = float(first)
        seen["entries"] = await conn.fetchval("SELECT count(*) FROM timeline_entry")
        seen["customers"] = await conn.fetchval("SELECT count(*) FROM customer")
    finally:
        await conn.close()
    return seen


# --- the timeline page and its floor -----------------------------------------------------------


def page_statement(customer_id: str, cursor: str | None) -> tuple[str, list[Any]]:
    """The SQL and arguments the repository sends for this page (the first `limit + 1` rows after `cursor`)."""
    statement, parameters = timeline_page_statement(customer_id, None, cursor, PAGE_LIMIT)
    compiled = statement.bindparams(**parameters).compile(dialect=make_url("postgresql+asyncpg://").get_dialect()())
    assert compiled.positiontup is not None
    return compiled.string, [compiled.params[name] for name in compiled.positiontup]


async def wait_for_entries(dsn: str, customer_id: str, count: int, give_up_after: float) -> str:
    """Wait until the customer's timeline holds `count` entries; the cursor of a page `DEEP_OFFSET` entries deep."""
    conn = await asyncpg.connect(dsn)
    deadline = time.monotonic() + give_up_after
    try:
        while await conn.fetchval("SELECT count(*) FROM timeline_entry WHERE customer_id = $1", customer_id) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{customer_id}'s timeline not filled within {give_up_after:.0f} s")
            await asyncio.sleep(0.1)
        # What autovacuum would soon do on a live database: without statistics the planner guesses 20 rows.
        await conn.execute("ANALYZE timeline_entry")
        at, entry_id = await conn.fetchrow(
            "SELECT time, id FROM timeline_entry WHERE customer_id = $1 ORDER BY time DESC, id DESC OFFSET $2 LIMIT 1",
            customer_id,
            DEEP_OFFSET - 1,
        )
    finally:
        await conn.close()
    return encode_cursor(at, entry_id)


async def select_floor(dsn: str, sql: str, args: list[Any], seconds: float) -> tuple[list[float], str]:
    """Latencies (ms) of the page's statement, one after another on one connection; and its plan."""
    conn = await asyncpg.connect(dsn)
    try:
        # The plan's nodes, without costs.
        plan = " → ".join(row[0].split("  (")[0].strip(" ->") for row in await conn.fetch("EXPLAIN " + sql, *args))
        rows = await conn.fetch(sql, *args)
        assert len(rows) == PAGE_LIMIT + 1, len(rows)
        latencies = []
        until = time.perf_counter() + seconds
        while (started := time.perf_counter()) < until:
            await conn.fetch(sql, *args)
            latencies.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return latencies, plan


def auth_script(token: str) -> str:
    return f'wrk.headers["Authorization"] = "Bearer {token}"\n'


# --- the run ---------------------------------------------------------------------------------


def run(args: argparse.Namespace, result: Result) -> None:
    load_before = os.getloadavg()[0]
    records = backlog(args.events, lambda index: f"bench-{index % CUSTOMERS}")
    deep_customer = f"bench-deep-{uuid.uuid4().hex[:6]}"
    deep = backlog(args.deep, lambda _: deep_customer)
    with tempfile.TemporaryDirectory(prefix="cf-bench-") as data_dir, contextlib.ExitStack() as cleanup:
        options = StackOptions(
            data_dir=Path(data_dir),
            base_port=0,
            broker_port=0,
            services=["customers"],
            environment={"CF_LOG_LEVEL": "WARNING", "CF_TOPIC_PREFIX": TOPIC_PREFIX},
        )
        stack = infrastructure(options, cleanup)
        bootstrap = stack.bootstrap_servers
        dsn = asyncpg_dsn(stack.database_urls["customers"])

        asyncio.run(produce(bootstrap, on_topics(records)))
        progress(f"customers: {args.events:,} events written to the three topics")
        floor = asyncio.run(consume_floor(bootstrap, args.events))
        progress(f"floor: raw aiokafka consume {floor:,.0f} messages/s")

        stack.start_services()
        service = stack.services["customers"]
        pids = process_ids(stack, "customers")
        seen = asyncio.run(
            watch_consumer(dsn, events=args.events, pids=pids, running=service.running, give_up_after=args.timeout)
        )
        rate = args.events / (seen["committed"] - seen["first_handled"])
        progress(f"customers: {rate:,.0f} events/s into {seen['entries']:,} timeline entries (floor {floor:,.0f}/s)")

        asyncio.run(produce(bootstrap, on_topics(deep)))
        deep_cursor = asyncio.run(wait_for_entries(dsn, deep_customer, args.deep, args.timeout))
        stack.wait_ready(["customers"])
        progress(f"customers: {deep_customer} has {args.deep:,} timeline entries; measuring pages")
        script = Path(data_dir) / "auth.lua"
        script.write_text(auth_script(stack.admin_token()))
        pages: dict[str, dict[str, float]] = {}
        for label, cursor in (("first page", None), (f"page {DEEP_OFFSET:,} entries deep", deep_cursor)):
            url = f"{stack.url('customers')}/v1/customers/{deep_customer}/timeline?limit={PAGE_LIMIT}"
            if cursor is not None:
                url += f"&cursor={cursor}"
            sql, sql_args = page_statement(deep_customer, cursor)
            run_wrk(url, seconds=2, connections=1, script=script)  # warm-up
            asyncio.run(select_floor(dsn, sql, sql_args, 2))
            served = run_wrk(url, seconds=args.seconds, connections=1, script=script)
            latencies, plan = asyncio.run(select_floor(dsn, sql, sql_args, args.seconds))
            if served.errors:
                raise SystemExit(f"{label}: {served.errors} failed requests")
            pages[label] = {
                "service_p99": served.p99_ms,
                "service_p50": served.p50_ms,
                "service_rps": served.requests_per_second,
                "floor_p99": percentile(latencies, 99),
                "floor_p50": percentile(latencies, 50),
                "floor_count": len(latencies),
            }
            # Every 1 in n kept for the chart (the percentiles are of all of them).
            result.samples[f"SELECT, {label} (ms)"] = latencies[:: max(1, len(latencies) // SAMPLES_KEPT)]
            result.notes.append(f"plan of the {label}'s statement (the same for both): {plan}")
            progress(
                f"{label}: GET p50 {served.p50_ms:.2f} ms, p99 {served.p99_ms:.2f} ms "
                f"({served.requests_per_second:,.0f} req/s); SELECT p50 {pages[label]['floor_p50']:.2f} ms, "
                f"p99 {pages[label]['floor_p99']:.2f} ms"
            )

    load_after = os.getloadavg()[0]
    result.add(
        Figure(
            "events/s into timelines (first handled → every event committed)",
            rate,
            "events/s",
            goal=f"≥ {GOAL_EVENTS:,.0f}",
            met=rate >= GOAL_EVENTS,
            floor=floor,
            ratio=rate / floor,
        )
    )
    result.add(Figure("events", args.events, "count"))
    result.add(
        Figure(
            "timeline entries", seen["entries"], "count", goal=f"= {args.events}", met=seen["entries"] == args.events
        )
    )
    for name in pids:
        spent = seen["cpu_committed"][name] - seen["cpu_first"][name]
        result.add(Figure(f"{name} CPU per event while consuming", spent / args.events * 1e6, "µs"))
        progress(f"cpu: {name} {spent:.1f} s from first event handled ({spent / args.events * 1e6:.0f} µs per event)")
    for label, page in pages.items():
        ratio = page["service_p99"] / page["floor_p99"]
        result.add(
            Figure(
                f"timeline {label} p99 (limit {PAGE_LIMIT}, {args.deep:,} entries)",
                page["service_p99"],
                "ms",
                goal=f"≤ {GOAL_PAGE_RATIO:g}× floor",
                met=ratio <= GOAL_PAGE_RATIO,
                floor=page["floor_p99"],
                ratio=ratio,
            )
        )
        result.add(Figure(f"timeline {label} p50", page["service_p50"], "ms", floor=page["floor_p50"]))
    result.notes += [
        f"{args.events:,} events pre-filled across the feedback, expectations and commitments topics (every type "
        f"that makes a timeline entry, {CUSTOMERS:,} customers) before the customers service starts",
        "events/s = events ÷ (moment every event's processed_event row was seen committed − first event handled); "
        "floor = a raw aiokafka consumer of its own group reading the same backlog, committing offsets per batch",
        f"pages: one customer with {args.deep:,} entries (written by the consumer); GET under wrk, one connection, "
        f"{args.seconds} s; floor = the statement the repository sends for the same page (compiled from it), "
        "executed one after another on one asyncpg connection to the same database, same duration",
        f"machine: {psutil.cpu_count()} cores shared by PostgreSQL, the broker, the service and this benchmark; "
        f"1-minute load average {load_before:.2f} before and {load_after:.2f} after (other work on the machine "
        "slows every figure, the floor included)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=30_000, help="events in the backlog")
    parser.add_argument("--deep", type=int, default=10_000, help="events of the customer whose pages are read")
    parser.add_argument("--seconds", type=int, default=10, help="seconds of each page measurement")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    args = parser.parse_args()
    result = Result("customers_timeline")
    run(args, result)
    path = result.write()
    progress(f"customers: results in {path}")


if __name__ == "__main__":
    main()
