"""A poison message on each consumed topic reaches its dead-letter topic, and
the messages behind it keep flowing into the departments' inboxes."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from ops.stack import Stack
from tests.faults.conftest import report
from tests.support.kafka import read_topic

pytestmark = [pytest.mark.faults, pytest.mark.slow]

POISON = b"\xff\xfe this is not a CloudEvent"


async def _inbox_has(http: httpx.AsyncClient, stack: Stack, department: str, subject: str) -> bool:
    response = await http.get(
        f"{stack.url('notifications')}/v1/departments/{department}/notifications", params={"limit": 200}
    )
    return any(item["subject"] == subject for item in response.json()["items"])


async def _eventually(check: Any, within: float = 60) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.25)
    return False


async def _poison_run(stack: Stack) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    producer = AIOKafkaProducer(bootstrap_servers=stack.bootstrap_servers, acks="all")
    await producer.start()
    try:
        for topic in ("feedback.events", "expectations.events", "commitments.events"):
            await producer.send_and_wait(topic, value=POISON, key=f"poison-{run}".encode())
    finally:
        await producer.stop()

    headers = {"Authorization": f"Bearer {stack.admin_token()}"}
    customer = f"poison-{run}"
    async with httpx.AsyncClient(headers=headers, timeout=10) as http:
        complaint = await http.post(
            f"{stack.url('feedback')}/v1/feedback",
            json={"customer_id": customer, "channel": "web", "kind": "complaint", "text": "Still broken."},
        )
        question = await http.post(
            f"{stack.url('expectations')}/v1/questions",
            json={"text": "What would make delivery feel reliable to you?", "topic": "delivery"},
        )
        assert question.status_code == 201, question.text
        meeting = await http.post(
            f"{stack.url('expectations')}/v1/meetings",
            json={
                "customer_id": customer,
                "held_at": datetime.now(UTC).isoformat(),
                "attendees": [
                    {"staff_id": "s-1", "name": "Ana", "department": "sales"},
                    {"staff_id": "s-2", "name": "Ben", "department": "support"},
                ],
                "customer_participants": [{"name": "Cleo", "role": "buyer"}],
                "question_ids": [question.json()["id"]],
                "notes": "Kick-off.",
            },
        )
        commitment = await http.post(
            f"{stack.url('commitments')}/v1/commitments",
            json={
                "customer_id": customer,
                "title": "Call back",
                "description": "Explain the delay.",
                "owner_id": "o-1",
                "department": "production",
                "due_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
                "source": {"type": "manual", "id": None},
            },
        )
        for response in (complaint, meeting, commitment):
            assert response.status_code == 201, response.text
        flowed = {
            "feedback.events": await _eventually(lambda: _inbox_has(http, stack, "support", complaint.json()["id"])),
            "expectations.events": await _eventually(lambda: _inbox_has(http, stack, "sales", meeting.json()["id"])),
            "commitments.events": await _eventually(
                lambda: _inbox_has(http, stack, "production", commitment.json()["id"])
            ),
        }
    dead_lettered = {}
    for topic in flowed:
        dead = await read_topic(
            stack.bootstrap_servers,
            f"{topic}.dlq",
            where=lambda r: r.key == f"poison-{run}".encode(),
            until=lambda found: len(found) >= 1,
            within=30,
        )
        dead_lettered[topic] = sorted({r.value == POISON for r in dead})
    return {"later_messages_flowed": flowed, "dead_lettered": dead_lettered}


def test_poison_messages_go_to_dead_letter_topics_and_later_messages_flow(stack: Stack) -> None:
    figures = asyncio.run(_poison_run(stack))
    report("poison", figures)
    for topic, flowed in figures["later_messages_flowed"].items():
        assert flowed, f"messages behind the poison on {topic} reached the inbox"
        assert figures["dead_lettered"][topic] == [True], f"the poison of {topic} is in {topic}.dlq"
