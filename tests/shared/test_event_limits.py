"""No single event stops a relay: an event the broker refuses for good is set aside.

Against the real database and broker: the refused event is moved to
`outbox_dead_event` with the reason while the events behind it, the same
customer's included, are published in order; the CLI lists and re-queues it.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import orjson
from fastapi import FastAPI
from typer.testing import CliRunner, Result

from ops.cli import app as cli
from shared.catalogue import FEEDBACK_RECEIVED
from shared.events import OutboxRecord, build_event
from shared.outbox import MAX_EVENT_BYTES_INFO, add_records
from shared.service import ServiceRuntime
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform
from tests.support.waiting import eventually

# Past the producer's 1 MiB request limit: the broker side refuses this for good.
BEYOND_THE_BROKER = 1_200_000


async def test_an_event_the_broker_refuses_is_set_aside_and_the_events_behind_it_flow_on(
    relaying: tuple[FastAPI, str], platform: Platform
) -> None:
    app, prefix = relaying
    runtime: ServiceRuntime = app.state.runtime
    run = uuid.uuid4().hex[:8]
    customer, other = f"dead-{run}-a", f"dead-{run}-b"

    def event(customer_id: str, n: int, padding: int = 0) -> OutboxRecord:
        data = {"run": run, "n": n, "padding": "x" * padding}
        return build_event(FEEDBACK_RECEIVED, data=data, subject=f"{customer_id}-{n}", customer_id=customer_id)

    huge = event(customer, 2, padding=BEYOND_THE_BROKER)
    # Written the way a row from before the limit (or from a service with a larger one) would be.
    async with runtime.sessionmaker() as session, session.begin():
        session.info[MAX_EVENT_BYTES_INFO] = 2 * BEYOND_THE_BROKER
        await add_records(session, [event(customer, 1), huge, event(customer, 3), event(other, 1)])

    def ours(record: Record) -> bool:
        return bool(record.key.decode() in (customer, other))

    records = await read_topic(
        platform.bootstrap_servers,
        f"{prefix}feedback.events",
        where=ours,
        until=lambda found: len(found) >= 3,
    )
    published = [(r.key.decode(), orjson.loads(r.value)["data"]["n"]) for r in records]
    assert [n for key, n in published if key == customer] == [1, 3]
    assert [n for key, n in published if key == other] == [1]

    # Set aside in the same transaction that gives up the claim, which commits once the others are acknowledged.
    dead = await eventually(
        lambda: platform.fetch(
            "feedback", "SELECT event_type, key, reason FROM outbox_dead_event WHERE event_id = $1", huge.event_id
        )
    )
    assert len(dead) == 1
    assert dead[0]["key"] == customer
    assert "MessageSizeTooLarge" in dead[0]["reason"]

    listed = await _cli(platform, "outbox", "dead", "--service", "feedback", "--json")
    assert listed.exit_code == 0, listed.output
    lines = [json.loads(line) for line in listed.output.splitlines()]
    assert any(line["event_id"] == str(huge.event_id) for line in lines)

    total = len(await platform.fetch("feedback", "SELECT 1 FROM outbox_dead_event"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:

        async def gauge_shows_them() -> bool:
            return f"cf_outbox_dead_events {float(total)}" in (await client.get("/metrics")).text

        await eventually(gauge_shows_them, within=10)


async def test_retry_queues_a_set_aside_event_again_and_the_relay_publishes_it(
    relaying: tuple[FastAPI, str], platform: Platform
) -> None:
    _, prefix = relaying
    customer = f"retry-{uuid.uuid4().hex[:8]}"
    record = build_event(FEEDBACK_RECEIVED, data={"n": 1}, subject=customer, customer_id=customer)
    conn_rows = await platform.fetch(
        "feedback",
        """
        INSERT INTO outbox_dead_event (outbox_id, event_id, topic, key, event_type, value, created_at, reason)
        VALUES (0, $1, $2, $3, $4, $5, now(), 'KafkaError: refused while the broker was misconfigured')
        RETURNING id
        """,
        record.event_id,
        record.topic,
        record.key,
        record.event_type,
        record.value,
    )
    assert conn_rows

    retried = await _cli(platform, "outbox", "retry", str(record.event_id))
    assert retried.exit_code == 0, retried.output
    assert "feedback" in retried.output

    records = await read_topic(
        platform.bootstrap_servers,
        f"{prefix}feedback.events",
        where=lambda r: r.key.decode() == customer,
        until=lambda found: len(found) >= 1,
    )
    assert orjson.loads(records[0].value)["id"] == str(record.event_id)
    assert not await platform.fetch("feedback", "SELECT 1 FROM outbox_dead_event WHERE event_id = $1", record.event_id)

    again = await _cli(platform, "outbox", "retry", str(record.event_id))
    assert again.exit_code == 1
    assert "no event" in again.output


async def test_outbox_commands_say_when_a_database_is_unreachable() -> None:
    unreachable = {"CF_FEEDBACK_DATABASE_URL": "postgresql://postgres@127.0.0.1:9/feedback"}
    for arguments in (["outbox", "dead"], ["outbox", "retry", str(uuid.uuid4())]):
        command = [*arguments, "--service", "feedback"]
        result = await asyncio.to_thread(CliRunner().invoke, cli, command, env=unreachable)
        assert result.exit_code == 1, result.output
        assert "feedback's database is unreachable" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)


async def _cli(platform: Platform, *arguments: str) -> Result:
    env = {f"CF_{service.upper()}_DATABASE_URL": url for service, url in platform.database_urls.items()}
    return await asyncio.to_thread(lambda: CliRunner().invoke(cli, list(arguments), env=env))
