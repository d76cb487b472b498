"""The due-moment scheduler: sleeps until the next promise's moment, then fires it.

Each replica keeps a LISTEN connection; creating or rescheduling a promise
NOTIFYs its moment, so a replica asleep until a later moment wakes early.
Between moments it costs nothing: one index probe for the earliest armed
`next_event_at`, then a sleep. Firing claims rows with FOR UPDATE SKIP
LOCKED and writes each event through the outbox in the same transaction as
the status change, so any number of replicas, restarted at any point, fire
each moment once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime

import asyncpg
from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.repository import SCHEDULE_CHANNEL
from shared.backoff import Backoff
from shared.db import asyncpg_dsn

logger = logging.getLogger(__name__)

# When a reached moment is held by another transaction, look again this soon.
HELD_RETRY_SECONDS = 0.02


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.fired = Counter(
            "cf_commitments_due_events_fired", "Due-soon and overdue events written.", ["type"], registry=registry
        )
        self.lateness = Histogram(
            "cf_commitments_due_event_lateness_seconds",
            "From a promise's due-soon or overdue moment to its event being written.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=registry,
        )
        self.wake_ups = Counter("cf_commitments_scheduler_wake_ups", "Times the scheduler woke.", registry=registry)


class DueMomentScheduler:
    def __init__(
        self,
        *,
        settings: Settings,
        sessionmaker: async_sessionmaker[AsyncSession],
        registry: CollectorRegistry | None = None,
    ) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker
        self._metrics = SchedulerMetrics(registry or CollectorRegistry())
        self._dsn = asyncpg_dsn(settings.database_url)
        self._wake = asyncio.Event()
        # The moment (database epoch) we sleep towards; None wakes on any announcement.
        self._target: float | None = None
        self.fired = 0
        self.wake_ups = 0

    async def run(self) -> None:
        """Fire moments until cancelled; reconnects to the database as needed."""
        backoff = Backoff()
        while True:
            try:
                await self._listen_and_fire(backoff)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning(
                    "due-moment scheduler interrupted (%s: %s); retrying in %.1fs", type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)

    async def _listen_and_fire(self, backoff: Backoff) -> None:
        conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=5)
        try:
            await conn.add_listener(SCHEDULE_CHANNEL, self._on_announcement)
            conn.add_termination_listener(lambda _conn: self._wake.set())
            loop = asyncio.get_running_loop()
            spacing = self._settings.commitments_scheduler_min_interval_seconds
            while True:
                if conn.is_closed():
                    # Announcements would be lost: reconnect, then look at the table afresh.
                    raise ConnectionError("the LISTEN connection closed")
                self._wake.clear()
                self._target = None
                woke_at = loop.time()
                fired, upcoming = await self._fire_reached()
                backoff.reset()
                delay = None
                if upcoming is not None:
                    moment, delay = upcoming
                    self._target = moment.timestamp()
                    if delay <= 0 and not fired:
                        delay = HELD_RETRY_SECONDS
                    delay = max(delay, woke_at + spacing - loop.time())
                await self._sleep(delay)
                self.wake_ups += 1
                self._metrics.wake_ups.inc()
        finally:
            await _close_quietly(conn)

    async def _fire_reached(self) -> tuple[int, tuple[datetime, float] | None]:
        """Fire every reached moment, in batches; then the next moment, read in the last batch's transaction."""
        batch = self._settings.commitments_scheduler_batch_size
        total = 0
        while True:
            async with self._sessionmaker() as session, session.begin():
                fired = await service.fire_reached_moments(session=session, limit=batch)
                upcoming = None if len(fired) == batch else await service.next_moment(session=session)
            for moment in fired:
                self._metrics.fired.labels(moment.event_type).inc()
                self._metrics.lateness.observe(max(0.0, moment.lateness_seconds))
            total += len(fired)
            self.fired += len(fired)
            if len(fired) < batch:
                return total, upcoming

    async def _sleep(self, delay: float | None) -> None:
        cap = self._settings.commitments_scheduler_max_sleep_seconds
        timeout = cap if delay is None else min(max(delay, 0.0), cap)
        if timeout <= 0:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    def _on_announcement(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        """Wake if the announced moment comes before the one we sleep towards."""
        try:
            moment = float(payload)
        except ValueError:
            self._wake.set()
            return
        if self._target is None or moment < self._target:
            self._wake.set()


async def _close_quietly(conn: asyncpg.Connection) -> None:
    try:
        await asyncio.wait_for(conn.close(), 2)
    except Exception:
        conn.terminate()
