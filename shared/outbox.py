"""The transactional outbox: events are written with the change, then relayed.

`add_event` writes a CloudEvent row in the caller's transaction, so there is
no change without its event and no event without its change. The relay
publishes rows with `acks=all`, keyed by customer id, in id order; it wakes
on `LISTEN outbox` (a trigger notifies on insert) and also sweeps on a timer,
and rides out a broker outage of any length with backoff, losing nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import Any

import asyncpg
from aiokafka import AIOKafkaProducer
from pydantic import BaseModel

from shared.backoff import Backoff
from shared.catalogue import EventSpec
from shared.config import PlatformSettings
from shared.db import UnitOfWork, asyncpg_dsn, driver_connection
from shared.events import CONTENT_TYPE, OutboxRecord, build_event
from shared.group_commit import highest_parameter, repeat_rows
from shared.kafka import ensure_topics
from shared.observability import Metrics

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "outbox"
BATCH_SIZE = 500
PUBLISH_TIMEOUT_SECONDS = 30.0
BACKLOG_REPORT_INTERVAL_SECONDS = 1.0
_HEADERS = [("content-type", CONTENT_TYPE.encode())]


async def add_event(
    session: UnitOfWork,
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


async def add_records(session: UnitOfWork, records: list[OutboxRecord]) -> None:
    """Write ready-made outbox records (for example republished events)."""
    if not records:
        return
    # Every write path passes here: straight to the driver, in the session's transaction.
    connection = await driver_connection(session)
    rows = [outbox_values(record) for record in records]
    if len(rows) == 1:
        await connection.execute(_INSERT, *rows[0])
    else:
        await connection.executemany(_INSERT, rows)


_COLUMNS = "outbox_event (event_id, topic, key, event_type, value)"
_INSERT = f"INSERT INTO {_COLUMNS} VALUES ($1, $2, $3, $4, $5)"


def outbox_values(record: OutboxRecord) -> tuple[uuid.UUID, str, str, str, bytes]:
    """The parameters a statement from `with_outbox_rows` takes after each row's own."""
    return record.event_id, record.topic, record.key, record.event_type, record.value


def with_outbox_rows(insert: str, row: str, rows: int = 1) -> str:
    """`insert` with `rows` VALUES tuples like `row`, and each row's event in the outbox, as one statement.

    One statement is atomic without BEGIN and COMMIT, so a request whose only
    write this is saves two round trips (and `shared.group_commit` can send
    many requests' rows at once). `row` is numbered from `$1`; pass each row's
    parameters, then `outbox_values(record)` of its event, one row after another.
    """
    own = highest_parameter(row)
    event = "(" + ", ".join(f"${own + number}" for number in range(1, 6)) + ")"
    # Numbered alike, so that row i's event takes the parameters right after row i's own.
    return (
        f"WITH change AS ({insert} VALUES {repeat_rows(row, rows, stride=own + 5)}) "
        f"INSERT INTO {_COLUMNS} VALUES {repeat_rows(event, rows, stride=own + 5)}"
    )


# Claimed and deleted in one statement; the rows come back if the transaction rolls back
# (a failed publish), and SKIP LOCKED leaves rows another relay holds alone.
_CLAIM = """
DELETE FROM outbox_event WHERE id IN (SELECT id FROM outbox_event ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED)
RETURNING id, topic, key, value
"""
_BACKLOG = "SELECT count(*), extract(epoch FROM now() - min(created_at)) FROM outbox_event"
_LEADER_LOCK = 7_246_001  # one active relay per service database keeps per-key order


class OutboxRelay:
    """Publishes outbox rows to Kafka; one leader per database, others stand by."""

    def __init__(
        self,
        *,
        settings: PlatformSettings,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        maintenance: list[str] | None = None,
    ) -> None:
        self._settings = settings
        self._producer = producer
        self._metrics = metrics
        self._dsn = asyncpg_dsn(settings.database_url)
        self._wake = asyncio.Event()
        self._maintenance = maintenance or []
        self._next_maintenance = 0.0
        self._next_backlog_report = 0.0
        self.published = 0

    async def run(self) -> None:
        """Relay until cancelled; reconnects to the database and broker as needed."""
        backoff = Backoff()
        while True:
            try:
                await self._lead()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning("outbox relay interrupted (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)

    async def _lead(self) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=5)
        try:
            # Another relay leads; poll until its connection (and lock) goes away.
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LEADER_LOCK):  # noqa: ASYNC110
                await asyncio.sleep(1.0)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            logger.info("outbox relay is the leader for %s", self._settings.service_name)
            backoff = Backoff()
            while True:
                self._wake.clear()
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
                await self._maybe_maintain(conn)
                # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
                # as the wake-up fires, and the relay then outlives its app (the lifespan hangs).
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._settings.outbox_sweep_interval_seconds):
                        await self._wake.wait()
        finally:
            await _close_quietly(conn)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _drain(self, conn: asyncpg.Connection) -> None:
        while await self._publish_batch(conn) == BATCH_SIZE:
            pass
        # The backlog gauges are read at most once a second, not on every NOTIFY wake-up:
        # under load the relay wakes once per committed request.
        now = time.monotonic()
        if now >= self._next_backlog_report:
            self._next_backlog_report = now + BACKLOG_REPORT_INTERVAL_SECONDS
            count, oldest = await conn.fetchrow(_BACKLOG)
            self._metrics.outbox_pending.set(count)
            self._metrics.outbox_oldest_seconds.set(float(oldest or 0.0))

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        async with conn.transaction():
            rows = sorted(await conn.fetch(_CLAIM, BATCH_SIZE), key=lambda row: row["id"])  # publish in id order
            if not rows:
                return 0
            # Bounded: a broker paused mid-request can leave a send or a delivery unanswered.
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                deliveries = [
                    await self._producer.send(
                        self._settings.topic(row["topic"]),
                        value=bytes(row["value"]),
                        key=row["key"].encode(),
                        headers=_HEADERS,
                    )
                    for row in rows
                ]
                await asyncio.gather(*deliveries)
        self.published += len(rows)
        self._metrics.outbox_published.inc(len(rows))
        return len(rows)

    async def _maybe_maintain(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now < self._next_maintenance:
            return
        self._next_maintenance = now + 60
        for statement in self._maintenance:
            await conn.execute(statement)

    async def _ensure_topics_quietly(self) -> None:
        try:
            await ensure_topics(self._settings)
        except Exception as exc:
            logger.info("topics not ensured yet: %s", exc)


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()
