"""The transactional outbox: events are written with the change, then relayed.

`add_event` writes a CloudEvent row in the caller's transaction, so there is
no change without its event and no event without its change. The relay
publishes rows with `acks=all`, keyed by customer id, in id order; it wakes
on `LISTEN outbox` (a trigger notifies on insert) and also sweeps on a timer,
and rides out a broker outage of any length with backoff, losing nothing.

No single event can stop the relay: a write that would make an event larger
than `CF_MAX_EVENT_BYTES` is refused with a 422 (`EventTooLarge`), and an
event the broker refuses for good (too large for it, an invalid topic) is
moved to `outbox_dead_event` with the reason, counted by
`cf_outbox_dead_events`, and the events behind it flow on, those of the same
customer included: one customer's other events are not held hostage by an
event that can never be sent. `customer-focus outbox dead` lists the set-aside
events and `customer-focus outbox retry <event id>` queues one again (it is
then published after the events written since).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    InvalidTopicError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    UnsupportedForMessageFormatError,
)
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.backoff import Backoff
from shared.catalogue import EventSpec
from shared.config import PlatformSettings
from shared.db import asyncpg_dsn
from shared.errors import Unprocessable
from shared.events import CONTENT_TYPE, OutboxRecord, build_event
from shared.kafka import ensure_topics
from shared.listen import Listening
from shared.observability import Metrics
from shared.tracing import failed as _failed
from shared.tracing import parent_context, stored_traceparent, traceparent_of

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"
BATCH_SIZE = 500
PUBLISH_TIMEOUT_SECONDS = 30.0
BACKLOG_REPORT_INTERVAL_SECONDS = 1.0
_HEADERS = [("content-type", CONTENT_TYPE.encode())]
DEFAULT_MAX_EVENT_BYTES = 262_144
# Where a session finds its service's `CF_MAX_EVENT_BYTES` (`session.info`, set by the app's sessionmaker).
MAX_EVENT_BYTES_INFO = "max_event_bytes"
# What the broker refuses whatever the moment: sending such an event again cannot succeed.
REFUSED_FOR_GOOD = (
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    InvalidTopicError,
    UnsupportedForMessageFormatError,
)


class EventTooLarge(Unprocessable):
    """A change whose event would exceed `CF_MAX_EVENT_BYTES`; nothing is written."""

    slug, title = "event-too-large", "Event too large"


def ensure_fits(record: OutboxRecord, max_bytes: int) -> None:
    """Refuse (422 `event-too-large`) an event whose key and value exceed `max_bytes`."""
    size = len(record.value) + len(record.key.encode())
    if size > max_bytes:
        raise EventTooLarge(
            f"This change would make a {record.event_type} event of {size} bytes; "
            f"events are at most {max_bytes} bytes (CF_MAX_EVENT_BYTES). Nothing was changed.",
            event_bytes=size,
            max_event_bytes=max_bytes,
        )


def max_event_bytes(session: AsyncSession) -> int:
    """The session's service's `CF_MAX_EVENT_BYTES` (in `session.info`, set by the app's sessionmaker)."""
    configured: int | None = session.info.get(MAX_EVENT_BYTES_INFO)
    return configured or DEFAULT_MAX_EVENT_BYTES


async def add_event(
    session: AsyncSession,
    spec: EventSpec,
    *,
    data: BaseModel | dict[str, Any],
    subject: str,
    customer_id: str,
) -> uuid.UUID:
    """Write the event for a change in the caller's transaction; return its id."""
    record = build_event(spec, data=data, subject=subject, customer_id=customer_id)
    await add_records(session, [record])
    return record.event_id


async def add_records(session: AsyncSession, records: list[OutboxRecord], *, refuse_oversized: bool = True) -> None:
    """Write ready-made outbox records (for example republished events).

    A record larger than the session's `CF_MAX_EVENT_BYTES` is refused (`EventTooLarge`) unless
    `refuse_oversized` is False: a background job that must not stall on one row (a due moment)
    writes it anyway, and the relay sets it aside if the broker refuses it.
    """
    if not records:
        return
    if refuse_oversized:
        max_bytes = max_event_bytes(session)
        for record in records:
            ensure_fits(record, max_bytes)
    rows = [outbox_values(record) for record in records]
    await session.execute(_INSERT, {column: [getattr(row, column) for row in rows] for column in OutboxValues._fields})


# Any number of rows in one statement (one execution, one run of the notify trigger), ids in the given order:
# the relay publishes by id, so a customer's events keep their order.
_INSERT = text(
    "INSERT INTO outbox_event (event_id, topic, key, event_type, value) "
    "SELECT event_id, topic, key, event_type, value FROM unnest(CAST(:event_id AS uuid[]), CAST(:topic AS text[]), "
    "CAST(:key AS text[]), CAST(:event_type AS text[]), CAST(:value AS bytea[])) "
    "WITH ORDINALITY AS e(event_id, topic, key, event_type, value, position) ORDER BY position"
)


class OutboxValues(NamedTuple):
    """An outbox row's columns, as an insert takes them."""

    event_id: uuid.UUID
    topic: str
    key: str
    event_type: str
    value: bytes


def outbox_values(record: OutboxRecord) -> OutboxValues:
    return OutboxValues(record.event_id, record.topic, record.key, record.event_type, record.value)


# Claimed and deleted in one statement; the rows come back if the transaction rolls back
# (a failed publish), and SKIP LOCKED leaves rows another relay holds alone. The batch is picked
# once (ARRAY(...) is an InitPlan): as `id IN (SELECT ... LIMIT ...)`, a nested-loop plan re-ran
# the subquery for every row it scanned, took far more than a batch and, scanning in heap order,
# left older rows behind newer rows of the same key (issue 21, tests/shared/test_outbox_claim_order.py).
_CLAIM = """
DELETE FROM outbox_event WHERE id = ANY (ARRAY(SELECT id FROM outbox_event ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING id, event_id, topic, key, event_type, value, created_at
"""
_SET_ASIDE = """
INSERT INTO outbox_dead_event (outbox_id, event_id, topic, key, event_type, value, created_at, reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
"""
_BACKLOG = """
SELECT count(*), extract(epoch FROM now() - min(created_at)), (SELECT count(*) FROM outbox_dead_event)
FROM outbox_event
"""
_LEADER_LOCK = 7_246_001  # one active relay per service database keeps per-key order


class OutboxRelay:
    """Publishes outbox rows to Kafka; one leader per database, others stand by."""

    def __init__(
        self,
        *,
        settings: PlatformSettings,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        tracer: Tracer | None = None,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._tracer = tracer
        self._listening = Listening(dsn=asyncpg_dsn(settings.database_url), channel=NOTIFY_CHANNEL, name="outbox relay")
        self._next_backlog_report = 0.0
        self.published = 0

    async def run(self) -> None:
        """Relay until cancelled; reconnects to the database and broker as needed."""
        await self._listening.run(self._lead, before_listen=self._wait_for_leadership)

    async def _wait_for_leadership(self, conn: asyncpg.Connection) -> None:
        # Another relay leads; poll until its connection (and lock) goes away.
        while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):  # noqa: ASYNC110
            await asyncio.sleep(1.0)
        logger.info("outbox relay is the leader for %s", self._settings.service_name)

    async def _lead(self, conn: asyncpg.Connection) -> None:
        backoff = Backoff()
        while True:
            try:
                await self._drain(conn)
                backoff.reset()
            except (asyncpg.PostgresConnectionError, OSError):
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning("outbox publish failed (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                await self._ensure_topics_quietly()
                continue
            await self._listening.wait(self._settings.outbox_sweep_interval_seconds)

    async def _drain(self, conn: asyncpg.Connection) -> None:
        while await self._publish_batch(conn) == BATCH_SIZE:
            pass
        # The backlog gauges are read at most once a second, not on every NOTIFY wake-up:
        # under load the relay wakes once per committed request.
        now = time.monotonic()
        if now >= self._next_backlog_report:
            self._next_backlog_report = now + BACKLOG_REPORT_INTERVAL_SECONDS
            count, oldest, dead = await conn.fetchrow(_BACKLOG)
            self._metrics.outbox_pending.set(count)
            self._metrics.outbox_oldest_seconds.set(float(oldest or 0.0))
            self._metrics.outbox_dead.set(dead)

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            rows = sorted(await conn.fetch(_CLAIM, BATCH_SIZE), key=lambda row: row["id"])  # publish in id order
            if not rows:
                return 0
            refused: list[tuple[asyncpg.Record, Exception]] = []
            # Bounded: a broker paused mid-request can leave a send or a delivery unanswered.
            spans: list[Span] = []
            try:
                async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                    sent = []
                    for row in rows:
                        value = bytes(row["value"])
                        topic = self._settings.topic(row["topic"])
                        # The event's trace travels as a Kafka header too (contract §2, v1.1): the bytes of its
                        # stored `traceparent` extension or, with tracing on, those of this publish's span.
                        traceparent = stored_traceparent(value)
                        if self._tracer is not None and traceparent is not None:
                            span = self._publish_span(topic, row, traceparent)
                            spans.append(span)
                            traceparent = (traceparent_of(span) or "").encode() or traceparent
                        try:
                            delivery = await self._producer.send(
                                topic,
                                value=value,
                                key=row["key"].encode(),
                                headers=_HEADERS if traceparent is None else [*_HEADERS, ("traceparent", traceparent)],
                            )
                        except REFUSED_FOR_GOOD as exc:  # the producer's own size check, before the broker
                            refused.append((row, exc))
                        else:
                            sent.append((row, delivery))
                    outcomes = await asyncio.gather(*(delivery for _, delivery in sent), return_exceptions=True)
                for (row, _), outcome in zip(sent, outcomes, strict=True):
                    if isinstance(outcome, REFUSED_FOR_GOOD):
                        refused.append((row, outcome))
                    elif isinstance(outcome, BaseException):
                        raise outcome  # a passing failure: the whole batch is claimed again later
            except BaseException as exc:
                if spans:
                    _failed(spans, exc)  # claimed again later: each retry is a span of its own
                raise
            finally:
                for span in spans:
                    span.end()
            if refused:
                await self._set_aside(conn, refused)
        self.published += len(rows) - len(refused)
        self._metrics.outbox_published.inc(len(rows) - len(refused))
        return len(rows)

    def _publish_span(self, topic: str, row: asyncpg.Record, traceparent: bytes) -> Span:
        """A producer span, child of the span that wrote the event; ended once the batch is acknowledged."""
        assert self._tracer is not None
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(
            f"publish {topic}",
            context=parent_context(traceparent),
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.message.id": str(row["event_id"]),
                "cloudevents.event_type": row["event_type"],
            },
        )

    async def _set_aside(self, conn: asyncpg.Connection, refused: list[tuple[asyncpg.Record, Exception]]) -> None:
        """Move events the broker refuses for good out of the queue, with the reason, in the claim's transaction."""
        for row, exc in refused:
            reason = f"{type(exc).__name__}: {exc}"[:1000]
            logger.error(
                "outbox event %s (%s, %d bytes) refused by the broker for good; set aside: %s",
                row["event_id"],
                row["event_type"],
                len(row["value"]),
                reason,
            )
            await conn.execute(
                _SET_ASIDE,
                row["id"],
                row["event_id"],
                row["topic"],
                row["key"],
                row["event_type"],
                row["value"],
                row["created_at"],
                reason,
            )
        self._next_backlog_report = 0.0  # the dead-event gauge moves at once

    async def _ensure_topics_quietly(self) -> None:
        try:
            await ensure_topics(self._settings)
        except Exception as exc:
            logger.info("topics not ensured yet: %s", exc)


@dataclass(frozen=True)
class DeadEvent:
    """An event set aside because the broker refused it for good."""

    event_id: uuid.UUID
    event_type: str
    topic: str
    key: str
    size: int
    created_at: datetime
    failed_at: datetime
    reason: str


_DEAD_EVENTS = """
SELECT event_id, event_type, topic, key, octet_length(value) AS size, created_at, failed_at, reason
FROM outbox_dead_event ORDER BY id LIMIT $1
"""
# Back at the end of the queue, with its own id: published after the events written since.
_REQUEUE = """
WITH moved AS (
    DELETE FROM outbox_dead_event WHERE event_id = $1 RETURNING event_id, topic, key, event_type, value
)
INSERT INTO outbox_event (event_id, topic, key, event_type, value) SELECT * FROM moved RETURNING id
"""


async def dead_events(conn: asyncpg.Connection, *, limit: int = 1000) -> list[DeadEvent]:
    """The events set aside in this service's database, oldest first."""
    return [DeadEvent(**dict(row)) for row in await conn.fetch(_DEAD_EVENTS, limit)]


async def requeue_dead_event(conn: asyncpg.Connection, event_id: uuid.UUID) -> bool:
    """Queue a set-aside event for publishing again; False if this database has no such event."""
    return await conn.fetchval(_REQUEUE, event_id) is not None
