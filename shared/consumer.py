"""A Kafka consumer whose effects happen exactly once.

For each batch: one transaction writes a `processed_event` row per event id
and runs the handler for the ids not seen before, then commits; only then is
the Kafka offset committed. A redelivered event finds its row and has no
second effect. A batch that fails is retried one message at a time; a message
that keeps failing goes to `<topic>.dlq` and the messages behind it flow on.
While the database is unreachable nothing is dead-lettered: the consumer
waits and retries, and commits no offset.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.backoff import Backoff
from shared.catalogue import dead_letter_topic
from shared.config import PlatformSettings
from shared.context import causation_id_var, correlation_id_var, traceparent_var
from shared.errors import is_unavailable
from shared.events import MalformedEvent, parse_event
from shared.observability import Metrics
from shared.tracing import failed as _failed
from shared.tracing import parent_context, traceparent_of
from shared.unit_of_work import unit_of_work

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

logger = logging.getLogger(__name__)

# One statement: first a transaction lock per (group, topic, partition) of the batch, in a fixed
# order, then the claims. A second member on a partition (a zombie after a rebalance) waits for
# the first before it writes anything, so it gets its transaction id after the first commits and
# each key's events keep their order in (txid, seq), which the notifications live stream reads
# (issue 21, tests/shared/test_consumer_partition_fence.py). The aggregate ends before any row
# is inserted; without the locks a claim waiting on another member's row, after writing the
# rows before it, went on to the next event of that key with the older transaction id.
_CLAIM = text(
    """
    WITH fence AS MATERIALIZED (
        SELECT count(pg_advisory_xact_lock(partition_key)) AS held
        FROM unnest(CAST(:partitions AS bigint[])) AS partition_key
    )
    INSERT INTO processed_event (consumer, event_id)
    SELECT :consumer, event_id FROM fence, unnest(CAST(:ids AS text[])) AS event_id
    ON CONFLICT DO NOTHING RETURNING event_id
    """
)
_MARK = text(
    "INSERT INTO processed_event (consumer, event_id, outcome) VALUES (:consumer, :id, :outcome) ON CONFLICT DO NOTHING"
)


@dataclass(frozen=True)
class ConsumedEvent:
    """A CloudEvent read from Kafka, with where it came from."""

    envelope: dict[str, Any]
    topic: str
    partition: int
    offset: int
    # The span this event's handling continues: with tracing on, the span of this consumer's processing
    # (child of the message's `traceparent` header, or else the event's extension); off, the extension.
    traceparent: str | None = None

    @property
    def id(self) -> str:
        return str(self.envelope["id"])

    @property
    def type(self) -> str:
        return str(self.envelope["type"])

    @property
    def data(self) -> dict[str, Any]:
        data = self.envelope.get("data")
        return data if isinstance(data, dict) else {}

    @property
    def customer_id(self) -> str:
        return str(self.envelope.get("customerid", ""))


@contextmanager
def caused_by(event: ConsumedEvent) -> Iterator[None]:
    """What is written meanwhile was caused by `event`: its events carry `event`'s correlation id, `event` as their
    cause and its trace. A per-event handler runs inside it; a batch handler enters it around each event's writes."""
    tokens = (
        correlation_id_var.set(event.envelope.get("correlationid") or event.id),
        causation_id_var.set(event.id),
        traceparent_var.set(event.traceparent),
    )
    try:
        yield
    finally:
        traceparent_var.reset(tokens[2])
        causation_id_var.reset(tokens[1])
        correlation_id_var.reset(tokens[0])


Handler = Callable[[AsyncSession, ConsumedEvent], Awaitable[None]]
# Gets every new event of a batch at once (same transaction), for handlers that write in bulk.
BatchHandler = Callable[[AsyncSession, list[ConsumedEvent]], Awaitable[None]]


@dataclass
class _Pending:
    record: ConsumerRecord
    event: ConsumedEvent | None
    error: str | None


def lanes_of(batches: dict[TopicPartition, list[ConsumerRecord]], lanes: int) -> list[list[ConsumerRecord]]:
    """The fetched records in at most `lanes` lists, by partition number: each partition whole and in order
    in one lane.

    A consumer applies its lanes at once, each in its own transaction: while one waits for the database,
    another runs. Messages are keyed by customer and the platform's topics have the same partition count,
    so a customer's events on every topic share a partition number, hence a lane, and two lanes seldom
    wait for each other's rows; where they do (a topic partitioned otherwise), the rows the handler locks
    order them, as between two replicas."""
    split: list[list[ConsumerRecord]] = [[] for _ in range(lanes)]
    for partition in sorted(batches):
        split[partition.partition % lanes].extend(batches[partition])
    return [lane for lane in split if lane]


class EventConsumer:
    """Consumes `topics` in group `cf-<service>-<name>` and applies `handler` once per event."""

    def __init__(
        self,
        *,
        settings: PlatformSettings,
        sessionmaker: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        metrics: Metrics,
        name: str,
        topics: Sequence[str],
        handler: Handler | None = None,
        max_batch: int = 500,
        retry_delays: Sequence[float] = (0.05, 0.2, 0.5),
        batch_handler: BatchHandler | None = None,
        tracer: Tracer | None = None,
        lanes: int = 1,
    ) -> None:
        if (handler is None) == (batch_handler is None):
            raise ValueError("give exactly one of handler and batch_handler")
        if lanes < 1:
            raise ValueError("lanes must be at least 1")
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._producer = producer
        self._metrics = metrics
        self.group_id = f"cf-{settings.service_name}-{name}"
        self._topics = list(topics)
        self._handler = handler
        self._batch_handler = batch_handler
        self._tracer = tracer
        self._name = name
        self._max_batch = max_batch
        self._lanes = lanes
        self._retry_delays = list(retry_delays)[: max(0, settings.consumer_max_attempts - 1)]
        self._lock = asyncio.Lock()
        self._prefix = settings.topic_prefix
        self._next_lag_report = 0.0
        self.processed = 0
        # Times a message waited because the database was unreachable (never counted against its attempts).
        self.database_waits = 0
        self._current: AIOKafkaConsumer | None = None
        self._pacing: FetchPacing | None = None
        self._partition_keys: dict[tuple[str, int], int] = {}

    @property
    def fetch_pacing(self) -> FetchPacing | None:
        """The running consumer's fetch wait (short while events come, longer when idle), or None."""
        return self._pacing

    def assigned(self) -> set[TopicPartition]:
        """The partitions this consumer holds in its group now (none while it joins or rebalances)."""
        return set(self._current.assignment()) if self._current is not None else set()

    async def run(self) -> None:
        """Consume until cancelled, reconnecting to the broker as needed."""
        backoff = Backoff()
        while True:
            consumer = self._current = self._new_consumer()
            try:
                await consumer.start()
                backoff.reset()
                await self._consume(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning(
                    "consumer %s interrupted (%s: %s); restarting in %.1fs",
                    self.group_id,
                    type(exc).__name__,
                    exc,
                    delay,
                )
                await asyncio.sleep(delay)
            finally:
                await _stop_quietly(consumer)

    def _new_consumer(self) -> AIOKafkaConsumer:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.kafka_bootstrap_servers,
            group_id=self.group_id,
            client_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=self._settings.kafka_fetch_max_wait_ms,
            max_poll_records=self._max_batch,
            metadata_max_age_ms=5_000,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        consumer.subscribe([self._settings.topic(t) for t in self._topics], listener=_WaitForBatch(self._lock))
        return consumer

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        pacing = self._pacing = FetchPacing(
            consumer,
            busy_ms=self._settings.kafka_fetch_max_wait_ms,
            idle_ms=self._settings.kafka_idle_fetch_max_wait_ms,
        )
        while True:
            batches = await consumer.getmany(timeout_ms=500, max_records=self._max_batch)
            pacing.fetched(bool(batches))
            if not batches:
                await self._report_lag(consumer)
                continue
            async with self._lock:
                assigned = consumer.assignment()
                lanes = lanes_of({tp: rs for tp, rs in batches.items() if tp in assigned}, self._lanes)
                if not lanes:
                    continue
                if len(lanes) == 1:
                    await self._process(lanes[0])
                else:
                    async with asyncio.TaskGroup() as lanes_at_work:
                        for lane in lanes:
                            lanes_at_work.create_task(self._process(lane))
                offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if tp in assigned and rs}
                try:
                    await consumer.commit(offsets)
                except (CommitFailedError, IllegalStateError) as exc:
                    # The group rebalanced mid-batch; the effects are committed and
                    # deduplicated, so whoever gets the partition skips them.
                    logger.info("offset commit skipped after rebalance: %s", exc)
            await self._report_lag(consumer)

    async def _process(self, records: list[ConsumerRecord]) -> None:
        pending = [self._parse(record) for record in records]
        good = [p for p in pending if p.event is not None]
        for poison in (p for p in pending if p.event is None):
            await self._dead_letter(poison.record, poison.error or "malformed event", event_id=None)
        if not good:
            return
        try:
            await self._apply_batch([p.event for p in good if p.event is not None])
        except Exception as exc:
            if len(good) == 1 and not is_unavailable(exc):
                logger.info("event failed alone: %s", exc)
            for p in good:
                await self._apply_alone(p)

    def _parse(self, record: ConsumerRecord) -> _Pending:
        topic = record.topic[len(self._prefix) :] if record.topic.startswith(self._prefix) else record.topic
        try:
            envelope = parse_event(record.value)
        except MalformedEvent as exc:
            return _Pending(record, None, str(exc))
        traceparent = envelope.get("traceparent")
        if self._tracer is not None:
            traceparent = _traceparent_header(record) or traceparent
        event = ConsumedEvent(
            envelope,
            topic,
            record.partition,
            record.offset,
            traceparent if isinstance(traceparent, str) else None,
        )
        return _Pending(record, event, None)

    async def _apply_batch(self, events: list[ConsumedEvent]) -> None:
        # With tracing on, a consumer span per new event, ended once the transaction has committed or failed.
        spans: list[Span] = []
        try:
            async with unit_of_work(self._sessionmaker) as session:
                # Through the session, not its driver connection: cancelled mid-statement on the driver (a replica
                # stopping), the session's rollback then waited forever (tests/notifications/test_replicas.py).
                claimed = await session.execute(
                    _CLAIM,
                    {
                        "consumer": self.group_id,
                        "partitions": self._partition_locks(events),
                        "ids": [e.id for e in events],
                    },
                )
                fresh = set(claimed.scalars().all())
                new: list[ConsumedEvent] = []
                for event in events:
                    if event.id in fresh:
                        fresh.discard(event.id)
                        new.append(event)
                    else:
                        self._metrics.consumer_events.labels(event.topic, "duplicate").inc()
                if self._batch_handler is not None:
                    if new:
                        await self._batch_handler(session, new if self._tracer is None else self._traced(new, spans))
                    for event in new:
                        self._metrics.consumer_events.labels(event.topic, "processed").inc()
                else:
                    for event in new:
                        await self._call(session, event, spans)
        except BaseException as exc:
            _failed(spans, exc)
            raise
        finally:
            for span in spans:
                span.end()
        self.processed += len(events)

    def _partition_locks(self, events: list[ConsumedEvent]) -> list[int]:
        """The batch's (group, topic, partition) lock keys, sorted so two members never wait on each other."""
        keys = set()
        for where in {(e.topic, e.partition) for e in events}:
            key = self._partition_keys.get(where)
            if key is None:
                name = f"{self.group_id}\0{where[0]}\0{where[1]}".encode()
                key = int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big", signed=True)
                self._partition_keys[where] = key
            keys.add(key)
        return sorted(keys)

    async def _apply_alone(self, pending: _Pending) -> None:
        event = pending.event
        assert event is not None
        attempts = 0
        backoff = Backoff(first=0.2, cap=5.0)
        while True:
            try:
                await self._apply_batch([event])
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_unavailable(exc):
                    # Not this message's fault: wait for the database, never dead-letter.
                    self.database_waits += 1
                    await asyncio.sleep(backoff.next())
                    continue
                if attempts >= len(self._retry_delays):
                    logger.warning(
                        "event %s (%s) failed %d times; dead-lettered: %s", event.id, event.type, attempts + 1, exc
                    )
                    await self._dead_letter(pending.record, f"{type(exc).__name__}: {exc}", event_id=event.id)
                    return
                await asyncio.sleep(self._retry_delays[attempts])
                attempts += 1

    def _span(self, event: ConsumedEvent) -> Span:
        """The consumer span of handling `event`, child of the span that published it."""
        assert self._tracer is not None
        from opentelemetry.trace import SpanKind

        return self._tracer.start_span(
            f"process {event.topic}",
            context=parent_context(event.traceparent),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.operation.type": "process",
                "messaging.destination.name": event.topic,
                "messaging.consumer.group.name": self.group_id,
                "messaging.message.id": event.id,
                "cloudevents.event_type": event.type,
            },
        )

    def _traced(self, events: list[ConsumedEvent], spans: list[Span]) -> list[ConsumedEvent]:
        """`events` for a batch handler, each `traceparent` naming the span of its handling (several events at
        once, so none is current): what the handler writes about an event continues its trace."""
        traced = []
        for event in events:
            span = self._span(event)
            spans.append(span)
            traced.append(replace(event, traceparent=traceparent_of(span)))
        return traced

    async def _call(self, session: AsyncSession, event: ConsumedEvent, spans: list[Span]) -> None:
        span = self._span(event) if self._tracer is not None else None
        if span is not None:
            spans.append(span)
            event = replace(event, traceparent=traceparent_of(span))
        assert self._handler is not None
        with caused_by(event):
            if span is None:
                await self._handler(session, event)
            else:
                from opentelemetry.trace import use_span

                with use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False):
                    await self._handler(session, event)
        self._metrics.consumer_events.labels(event.topic, "processed").inc()

    async def _dead_letter(self, record: ConsumerRecord, error: str, *, event_id: str | None) -> None:
        headers = [
            *(record.headers or ()),
            ("cf-error", error[:1000].encode()),
            ("cf-original-topic", record.topic.encode()),
            ("cf-original-partition", str(record.partition).encode()),
            ("cf-original-offset", str(record.offset).encode()),
        ]
        topic = record.topic[len(self._prefix) :] if record.topic.startswith(self._prefix) else record.topic
        backoff = Backoff(first=0.2)
        while True:
            try:
                await self._producer.send_and_wait(
                    self._settings.topic(dead_letter_topic(topic)),
                    value=record.value,
                    key=record.key,
                    headers=headers,
                )
                break
            except KafkaError as exc:
                logger.warning("dead-letter publish failed: %s", exc)
                await asyncio.sleep(backoff.next())
        self._metrics.consumer_events.labels(topic, "dead_lettered").inc()
        if event_id is not None:
            async with unit_of_work(self._sessionmaker) as session:
                await session.execute(_MARK, {"consumer": self.group_id, "id": event_id, "outcome": "dead_lettered"})

    async def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        now = time.monotonic()
        if now < self._next_lag_report:
            return
        self._next_lag_report = now + 1.0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            position = await consumer.position(tp)
            self._metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, highwater - position))


class FetchPacing:
    """The consumer's fetch wait: `busy_ms` while events come, `idle_ms` after `IDLE_AFTER_SECONDS` of nothing.

    A broker that never answers a fetch before its wait is over (the embedded one) needs a short wait for
    low latency, and then each consumer asks it about every partition `1000 / busy_ms` times a second,
    whether or not anything comes: most of an idle stack's CPU. After a quiet second the wait grows, and the
    first record fetched shortens it again; the first event after the quiet waits at most `idle_ms` more.
    aiokafka has no public setter: its fetcher reads `_fetch_max_wait_ms` for each fetch request it builds
    (aiokafka is pinned; tests/shared/test_consumer.py checks the attribute it reads).
    """

    IDLE_AFTER_SECONDS = 1.0

    def __init__(self, consumer: AIOKafkaConsumer, *, busy_ms: int, idle_ms: int) -> None:
        self._fetcher = consumer._fetcher
        self._busy_ms = busy_ms
        self._idle_ms = max(idle_ms, busy_ms)
        self._last_records = time.monotonic()
        self.quickened = 0  # times records ended an idle wait
        self._set(busy_ms)

    @property
    def wait_ms(self) -> int:
        return int(self._fetcher._fetch_max_wait_ms)

    def fetched(self, records: bool) -> None:
        if records:
            self._last_records = time.monotonic()
            if self.wait_ms != self._busy_ms:
                self._set(self._busy_ms)
                self.quickened += 1
        elif self.wait_ms != self._idle_ms and time.monotonic() - self._last_records >= self.IDLE_AFTER_SECONDS:
            self._set(self._idle_ms)

    def _set(self, ms: int) -> None:
        self._fetcher._fetch_max_wait_ms = ms


class _WaitForBatch(ConsumerRebalanceListener):  # type: ignore[misc]
    """Lets the batch in progress finish and commit before partitions move."""

    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:  # noqa: ARG002
        async with self._lock:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:  # noqa: ARG002
        return None


def _traceparent_header(record: ConsumerRecord) -> str | None:
    for name, value in record.headers or ():
        if name == "traceparent" and isinstance(value, bytes):
            return value.decode("latin-1")
    return None


async def _stop_quietly(consumer: AIOKafkaConsumer) -> None:
    try:
        await asyncio.wait_for(consumer.stop(), 5)
    except Exception as exc:
        logger.debug("consumer stop: %s", exc)
