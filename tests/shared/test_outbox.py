"""The transactional outbox and its relay, against the real database and broker."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import defaultdict

import orjson
from fastapi import FastAPI

from shared.catalogue import FEEDBACK_RECEIVED
from shared.outbox import add_event
from shared.service import ServiceRuntime
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform
from tests.support.waiting import eventually


class _Rollback(Exception):
    pass


async def test_committed_events_are_published_once_in_order_per_key_and_rolled_back_never(
    relaying: tuple[FastAPI, str], platform: Platform
) -> None:
    app, prefix = relaying
    runtime: ServiceRuntime = app.state.runtime
    run = uuid.uuid4().hex[:8]
    committed: dict[str, list[int]] = defaultdict(list)
    rolled_back: set[tuple[str, int]] = set()

    async def customer_writer(customer: str) -> None:
        sequence = 0
        for txn in range(15):
            events = [sequence + i for i in range(random.randint(1, 3))]
            sequence += len(events)
            roll_back = txn % 4 == 3
            try:
                async with runtime.sessionmaker() as session, session.begin():
                    for n in events:
                        await add_event(
                            session,
                            FEEDBACK_RECEIVED,
                            data={"n": n, "run": run},
                            subject=f"{customer}-{n}",
                            customer_id=customer,
                        )
                        await asyncio.sleep(random.random() * 0.01)
                    if roll_back:
                        raise _Rollback
            except _Rollback:
                rolled_back.update((customer, n) for n in events)
            else:
                committed[customer].extend(events)

    customers = [f"cust-{run}-{i}" for i in range(12)]
    await asyncio.gather(*(customer_writer(c) for c in customers))
    expected = sum(len(v) for v in committed.values())
    # One marker per customer, committed after all the rest: the relay keeps each key's order,
    # so once every marker is in, an event published twice would be in too.
    async with runtime.sessionmaker() as session, session.begin():
        for customer in customers:
            await add_event(
                session, FEEDBACK_RECEIVED, data={"run": run, "marker": True}, subject="marker", customer_id=customer
            )

    def ours(record: Record) -> bool:
        # The relay also publishes rows other tests left in the shared database: count this run's.
        return bool(orjson.loads(record.value)["data"].get("run") == run)

    def is_marker(record: Record) -> bool:
        return bool(orjson.loads(record.value)["data"].get("marker"))

    found = await read_topic(
        platform.bootstrap_servers,
        f"{prefix}feedback.events",
        until=lambda found: sum(map(is_marker, found)) >= len(customers),
        where=ours,
        within=30,
    )
    records = [r for r in found if not is_marker(r)]
    received: dict[str, list[int]] = defaultdict(list)
    for record in records:
        envelope = orjson.loads(record.value)
        assert record.key.decode() == envelope["customerid"]
        assert dict(record.headers)["content-type"] == b"application/cloudevents+json"
        received[envelope["customerid"]].append(envelope["data"]["n"])
    assert len(records) == expected, "every committed event exactly once"
    for customer in customers:
        assert received[customer] == committed[customer], "order per key, none rolled back"
    assert not {(c, n) for c, ns in received.items() for n in ns} & rolled_back

    async def none_pending() -> bool:
        pending = await platform.fetch(
            "feedback", "SELECT count(*) AS n FROM outbox_event WHERE key LIKE $1", f"cust-{run}-%"
        )
        return bool(pending[0]["n"] == 0)

    await eventually(none_pending)


async def test_event_envelope_carries_the_contract_attributes(
    relaying: tuple[FastAPI, str], platform: Platform
) -> None:
    app, prefix = relaying
    runtime: ServiceRuntime = app.state.runtime
    customer = f"cust-{uuid.uuid4().hex[:8]}"
    async with runtime.sessionmaker() as session, session.begin():
        event_id = await add_event(session, FEEDBACK_RECEIVED, data={"id": "x"}, subject="x", customer_id=customer)
    records = await read_topic(
        platform.bootstrap_servers,
        f"{prefix}feedback.events",
        where=lambda r: r.key == customer.encode(),
        until=lambda found: len(found) >= 1,
    )
    envelope = orjson.loads(records[0].value)
    assert envelope["id"] == str(event_id)
    assert envelope["specversion"] == "1.0"
    assert envelope["source"] == "/customer-focus/feedback"
    assert envelope["type"] == "feedback.received"
    assert envelope["subject"] == "x"
    assert envelope["datacontenttype"] == "application/json"
    assert envelope["customerid"] == customer
    assert envelope["correlationid"]
    assert envelope["time"].endswith("Z") or "+00:00" in envelope["time"]
