"""What the notifications tests share: real webhook receivers, event factories, an SSE reader."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from aiokafka import AIOKafkaProducer
from starlette.types import Receive, Scope, Send

from ops.embedded import free_port
from services.notifications.config import Settings
from shared.catalogue import EventSpec
from shared.events import CONTENT_TYPE, OutboxRecord, build_event
from tests.support.local_server import LocalServer
from tests.support.platform import Platform
from tests.support.waiting import eventually

ROUTER_GROUP = "cf-notifications-router"
T = TypeVar("T")


async def start_webhook_worker(settings: Settings, **environment: str) -> asyncio.subprocess.Process:
    """A `python -m services.notifications.webhook_worker` process with `settings`' database, broker and webhooks
    (and `environment` on top)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.notifications.webhook_worker",
        env={
            **os.environ,
            "CF_NOTIFICATIONS_DATABASE_URL": settings.database_url,
            "CF_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "CF_TOPIC_PREFIX": settings.topic_prefix,
            "CF_AUTH_SECRET": settings.auth_secret.get_secret_value(),
            "CF_WEBHOOK_ALLOW_PRIVATE": "true" if settings.webhook_allow_private else "false",
            "CF_WEBHOOK_TIMEOUT_SECONDS": str(settings.webhook_timeout_seconds),
            "CF_WEBHOOK_RETRY_SCHEDULE": ",".join(str(delay) for delay in settings.webhook_retry_schedule),
            "CF_WEBHOOK_CONCURRENCY_PER_SUBSCRIPTION": str(settings.webhook_concurrency_per_subscription),
            **environment,
        },
    )


# --- events, published as the producing services do ------------------------------------------


class EventPublisher:
    """Publishes real CloudEvents to the prefixed source topics with a real aiokafka producer."""

    def __init__(self, platform: Platform, producer: AIOKafkaProducer) -> None:
        self.platform = platform
        self.producer = producer

    @classmethod
    @contextlib.asynccontextmanager
    async def started(cls, platform: Platform) -> AsyncIterator[EventPublisher]:
        """A publisher on its own producer (acks from every replica, no linger), stopped on the way out."""
        producer = AIOKafkaProducer(bootstrap_servers=platform.bootstrap_servers, acks="all", linger_ms=0)
        await producer.start()
        try:
            yield cls(platform, producer)
        finally:
            await producer.stop()

    async def publish(
        self, spec: EventSpec, data: dict[str, Any], *, customer_id: str, event_id: uuid.UUID | None = None
    ) -> OutboxRecord:
        record = build_event(spec, data=data, subject=str(data["id"]), customer_id=customer_id, event_id=event_id)
        await self.send(record)
        return record

    async def send(self, record: OutboxRecord) -> None:
        await self.producer.send_and_wait(
            self.platform.topic(record.topic),
            value=record.value,
            key=record.key.encode(),
            headers=[("content-type", CONTENT_TYPE.encode())],
        )

    async def send_all(self, records: list[OutboxRecord]) -> None:
        """Send every record at once, so the service reads them in few batches."""
        sent = [
            await self.producer.send(
                self.platform.topic(r.topic),
                value=r.value,
                key=r.key.encode(),
                headers=[("content-type", CONTENT_TYPE.encode())],
            )
            for r in records
        ]
        await asyncio.gather(*sent)

    async def processed(self, record: OutboxRecord, *, within: float = 15.0) -> None:
        """Wait until the notifications service has handled the event."""

        async def done() -> bool:
            rows = await self.platform.fetch(
                "notifications",
                "SELECT 1 FROM processed_event WHERE consumer = $1 AND event_id = $2",
                ROUTER_GROUP,
                str(record.event_id),
            )
            return bool(rows)

        await eventually(done, within=within)


def customer() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


def feedback(
    customer_id: str, kind: str = "complaint", *, rating: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    now = "2026-11-22T10:00:00Z"
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "channel": "email",
        "kind": kind,
        "text": f"A {kind} from {customer_id}",
        "rating": rating,
        "product": "widget",
        "tags": [],
        "occurred_at": now,
        "status": "new",
        "sentiment": {"score": 0.0, "label": "neutral"},
        "themes": [],
        "created_at": now,
        "updated_at": now,
        **extra,
    }


def commitment(customer_id: str, department: str = "production", status: str = "open") -> dict[str, Any]:
    now = "2026-11-22T10:00:00Z"
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "title": "Ship the fix",
        "description": "Fix the widget",
        "owner_id": "owner-1",
        "department": department,
        "due_at": "2026-12-01T10:00:00Z",
        "status": status,
        "renegotiations": 0,
        "history": [],
        "source": {"type": "manual", "id": None},
        "created_at": now,
        "updated_at": now,
    }


def meeting(customer_id: str) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "customer_kind": "external",
        "held_at": "2026-11-22T09:00:00Z",
        "attendees": [
            {"staff_id": "s1", "name": "Ann", "department": "sales"},
            {"staff_id": "s2", "name": "Bo", "department": "production"},
        ],
        "customer_participants": [{"name": "Cy", "role": "buyer"}],
        "question_ids": [],
        "notes": "",
    }


def expectation(customer_id: str, capability: str = "can_meet", status: str = "recorded") -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "meeting_id": str(uuid.uuid4()),
        "customer_id": customer_id,
        "status": status,
        "version": 1,
        "statement": "It must be fast",
        "restatement": "Pages load within a second",
        "priority": "high",
        "key_point": True,
        "measure": "p95 < 1s",
        "capability": capability,
        "question_id": None,
    }


# --- a real webhook receiver -----------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status: int = 204
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]
    body: bytes
    at: float
    client: tuple[str, int] | None = None


class Receiver:
    """An HTTP server on 127.0.0.1 that records each request; every path answers as it was told."""

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: dict[str, list[Received]] = defaultdict(list)
        self._answers: dict[str, list[Answer]] = {}
        # Idle connections are closed after a second, as impatient receivers do.
        self._server = LocalServer(self, self.port, keepalive_seconds=1)

    def endpoint(self, *answers: Answer) -> str:
        """A new path answering with `answers` in turn (the last one repeats; 204 if none)."""
        path = f"/hooks/{uuid.uuid4().hex}"
        self._answers[path] = list(answers) or [Answer()]
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, url: str, *answers: Answer) -> None:
        self._answers[httpx.URL(url).path] = list(answers)

    def received(self, url: str) -> list[Received]:
        return self.requests[httpx.URL(url).path]

    def open_connections(self) -> set[tuple[str, int]]:
        """The client address of each connection open to the receiver now."""
        return self._server.open_connections()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        path = scope["path"]
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        client = scope.get("client")
        self.requests[path].append(Received(headers, body, time.monotonic(), tuple(client) if client else None))
        answers = self._answers.get(path, [Answer(404)])
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if answer.delay:
            await asyncio.sleep(answer.delay)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": b""})

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop()


# --- Server-Sent Events ----------------------------------------------------------------------


@dataclass(frozen=True)
class StreamEvent:
    id: str | None
    data: str | None
    comment: str | None


async def read_stream(response: httpx.Response) -> AsyncIterator[StreamEvent]:
    """The events (and comments, such as keep-alive pings) of an open SSE response."""
    event_id: str | None = None
    data: list[str] = []
    comment: str | None = None
    async for line in response.aiter_lines():
        if line == "":
            if event_id is not None or data or comment is not None:
                yield StreamEvent(event_id, "\n".join(data) if data else None, comment)
            event_id, data, comment = None, [], None
        elif line.startswith(":"):
            comment = line[1:].strip()
        elif line.startswith("id:"):
            event_id = line[3:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
