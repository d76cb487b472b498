"""Crash test, modelled on Kafka's system tests and Jepsen.

Concurrent clients post complaints, each with an Idempotency-Key, retrying
on errors, while every service process is SIGKILLed three times and the
broker is paused with SIGSTOP for 10 s three times, all at 20 % progress
or later. After recovery every accepted complaint has exactly one
`feedback.received`, exactly one notification in the support and the
management inbox, and exactly one event on `notifications.support`, in
per-customer order. Lost and duplicated effects are reported as figures.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson
import pytest

from shared.config import SERVICES
from shared.db import asyncpg_dsn
from shared.stack import Stack
from tests.faults.conftest import FULL, report, start_stack
from tests.support.kafka import Record, read_to_end
from tests.support.platform import private_directory

pytestmark = pytest.mark.faults

COMPLAINTS = 10_000 if FULL else 2_000
CLIENTS = 40 if FULL else 16
CUSTOMERS = 500 if FULL else 200
KILLS_PER_SERVICE = 3
BROKER_PAUSES = 3
PAUSE_SECONDS = 10.0


@dataclass
class Load:
    run: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    accepted: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    done: int = 0
    retries: Counter[str] = field(default_factory=Counter)
    gate: float = 0.25  # clients wait while progress is past this share, so faults land mid-load

    def customer(self, n: int) -> str:
        return f"crash-{self.run}-{n % CUSTOMERS}"


async def post_complaints(stack: Stack, load: Load, client_index: int) -> None:
    """One client: its own customers, each customer's complaints in order, retrying until accepted."""
    token = stack.admin_token()
    mine = [n for n in range(COMPLAINTS) if (n % CUSTOMERS) % CLIENTS == client_index]
    async with httpx.AsyncClient(timeout=10) as http:
        for n in mine:
            while load.done >= load.gate * COMPLAINTS:  # noqa: ASYNC110 - held back until the next fault lands
                await asyncio.sleep(0.05)
            customer = load.customer(n)
            body = {
                "customer_id": customer,
                "channel": "web",
                "kind": "complaint",
                "text": f"Complaint #{n}: the parcel arrived broken.",
            }
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"crash-{load.run}-{n}"}
            while True:
                try:
                    response = await http.post(f"{stack.url('feedback')}/v1/feedback", json=body, headers=headers)
                except httpx.TransportError as exc:
                    load.retries[type(exc).__name__] += 1
                    await asyncio.sleep(0.1 + random.random() * 0.2)
                    continue
                if response.status_code == 201:
                    load.accepted[customer].append(response.json()["id"])
                    load.done += 1
                    break
                load.retries[str(response.status_code)] += 1
                assert response.status_code in (409, 503), response.text  # in flight, or a dependency is down
                await asyncio.sleep(0.1 + random.random() * 0.2)


async def inject_faults(stack: Stack, load: Load) -> list[str]:
    """Kill each service three times and pause the broker three times, from 20 % progress on."""
    faults: list[tuple[str, str]] = [("kill", s) for s in SERVICES for _ in range(KILLS_PER_SERVICE)]
    faults += [("pause", "broker")] * BROKER_PAUSES
    random.Random(7).shuffle(faults)
    log = []
    for index, (kind, target) in enumerate(faults):
        threshold = 0.2 + 0.7 * index / len(faults)
        load.gate = min(1.0, threshold + 0.05)
        while load.done < threshold * COMPLAINTS:  # noqa: ASYNC110 - polls the clients' progress
            await asyncio.sleep(0.05)
        at = f"{100 * load.done / COMPLAINTS:.0f}%"
        if kind == "kill":
            stack.kill_service(target)
            await asyncio.sleep(0.5)
            await asyncio.to_thread(stack.restart_service, target)
        else:
            stack.pause_broker()
            await asyncio.sleep(PAUSE_SECONDS)
            stack.resume_broker()
        log.append(f"{kind} {target} at {at}")
        say(f"fault {index + 1}/{len(faults)}: {log[-1]}")
    load.gate = 1.0
    return log


def say(message: str) -> None:
    print(f"[crash {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: T201 - progress


async def wait_until(check: Callable[[], Any], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not converged within {within:.0f}s: {what}")
        await asyncio.sleep(0.5)


async def scalar(stack: Stack, service: str, sql: str, *args: Any) -> Any:
    conn = await asyncpg.connect(asyncpg_dsn(stack.database_urls[service]))
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


def test_no_accepted_complaint_is_lost_or_duplicated_through_crashes_and_broker_pauses() -> None:
    with private_directory("cf-crash-") as data_dir:
        stack = start_stack(data_dir)
        try:
            asyncio.run(_crash_test(stack))
        finally:
            stack.stop()


async def _crash_test(stack: Stack) -> None:
    load = Load()
    started = time.monotonic()
    clients = [asyncio.create_task(post_complaints(stack, load, i)) for i in range(CLIENTS)]
    fault_log = await inject_faults(stack, load)
    await asyncio.gather(*clients)
    load_seconds = time.monotonic() - started

    accepted = {fid for ids in load.accepted.values() for fid in ids}
    assert len(accepted) == COMPLAINTS, "every complaint is eventually accepted exactly once"
    pattern = f"crash-{load.run}-%"

    async def outboxes_drained() -> bool:
        pending = [await scalar(stack, s, "SELECT count(*) FROM outbox_event") for s in ("feedback", "notifications")]
        return sum(int(p) for p in pending) == 0

    async def inboxes_filled() -> bool:
        count = await scalar(
            stack,
            "notifications",
            "SELECT count(DISTINCT (subject, department)) FROM notification "
            "WHERE customer_id LIKE $1 AND department IN ('support', 'management')",
            pattern,
        )
        return int(count) >= 2 * COMPLAINTS

    say(f"load done in {load_seconds:.0f}s; waiting for the inboxes and outboxes")
    await wait_until(inboxes_filled, within=300, what="support and management inboxes")
    await wait_until(outboxes_drained, within=120, what="outboxes")

    stored = await scalar(stack, "feedback", "SELECT count(*) FROM feedback WHERE customer_id LIKE $1", pattern)
    inbox_rows = await scalar(
        stack,
        "notifications",
        "SELECT count(*) FROM notification WHERE customer_id LIKE $1 AND department IN ('support', 'management')",
        pattern,
    )

    say("reading feedback.events and notifications.support")

    def mine(record: Record) -> bool:
        return bool(record.key.decode().startswith(f"crash-{load.run}-"))

    def every_accepted(records: list[Record]) -> bool:
        # Read on past stale end offsets (see read_to_end) until every accepted complaint is seen.
        return accepted <= {str(orjson.loads(r.value).get("data", {}).get("id")) for r in records}

    received = await read_to_end(stack.bootstrap_servers, "feedback.events", where=mine, until=every_accepted)
    support = await read_to_end(stack.bootstrap_servers, "notifications.support", where=mine, until=every_accepted)
    figures: dict[str, Any] = {
        "complaints": COMPLAINTS,
        "clients": CLIENTS,
        "load_seconds": round(load_seconds, 1),
        "faults": fault_log,
        "client_retries": dict(load.retries),
    }
    for topic, records in (("feedback.events", received), ("notifications.support", support)):
        events: dict[str, set[str]] = defaultdict(set)
        order: dict[str, list[str]] = defaultdict(list)
        for record in records:
            envelope = orjson.loads(record.value)
            if envelope["type"] != "feedback.received":
                continue
            feedback_id = str(envelope["data"]["id"])
            if envelope["id"] not in events[feedback_id]:
                events[feedback_id].add(envelope["id"])
                order[envelope["customerid"]].append(feedback_id)
        lost = accepted - set(events)
        duplicated = {f for f, ids in events.items() if len(ids) > 1}
        out_of_order = [c for c, ids in load.accepted.items() if order[c] != ids]
        figures[topic] = {
            "messages": len(records),
            "distinct_events": sum(len(v) for v in events.values()),
            "lost": len(lost),
            "duplicated_effects": len(duplicated),
            "redelivered_copies": len(records) - sum(len(v) for v in events.values()),
            "customers_out_of_order": len(out_of_order),
        }
    figures["feedback_rows"] = stored
    figures["inbox_rows_support_and_management"] = inbox_rows
    report("crash", figures)

    assert stored == COMPLAINTS, "one stored complaint per idempotency key"
    assert inbox_rows == 2 * COMPLAINTS, "exactly one notification per complaint in support and in management"
    for topic in ("feedback.events", "notifications.support"):
        assert figures[topic]["lost"] == 0, topic
        assert figures[topic]["duplicated_effects"] == 0, topic
        assert figures[topic]["customers_out_of_order"] == 0, topic
