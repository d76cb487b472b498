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
import logging
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.repository import SCHEDULE_CHANNEL
from shared.db import asyncpg_dsn
from shared.listen import Listening
from shared.unit_of_work import unit_of_work

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
        # The moment (database epoch) we sleep towards; None wakes on any announcement.
        self._target: float | None = None
        self._listening = Listening(
            dsn=asyncpg_dsn(settings.database_url),
            channel=SCHEDULE_CHANNEL,
            name="due-moment scheduler",
            wakes_on=self._announced_earlier,
        )
        self.fired = 0
        self.wake_ups = 0

    async def run(self) -> None:
        """Fire moments until cancelled; reconnects to the database as needed."""
        await self._listening.run(self._fire_moments)

    async def _fire_moments(self, _conn: object) -> None:
        """Fire what is reached, sleep until the next moment or an earlier announcement; again.

        After a lost connection (`ConnectionLost`, announcements missed) the helper reconnects and
        this starts again from the table.
        """
        loop = asyncio.get_running_loop()
        spacing = self._settings.commitments_scheduler_min_interval_seconds
        cap = self._settings.commitments_scheduler_max_sleep_seconds
        while True:
            self._target = None
            woke_at = loop.time()
            fired, upcoming = await self._fire_reached()
            delay = None
            if upcoming is not None:
                moment, delay = upcoming
                self._target = moment.timestamp()
                if delay <= 0 and not fired:
                    delay = HELD_RETRY_SECONDS
                delay = max(delay, woke_at + spacing - loop.time())
            await self._listening.wait(cap if delay is None else min(max(delay, 0.0), cap))
            self.wake_ups += 1
            self._metrics.wake_ups.inc()

    async def _fire_reached(self) -> tuple[int, tuple[datetime, float] | None]:
        """Fire every reached moment, in batches; then the next moment, read in the last batch's transaction."""
        batch = self._settings.commitments_scheduler_batch_size
        total = 0
        while True:
            async with unit_of_work(self._sessionmaker) as session:
                fired = await service.fire_reached_moments(session=session, limit=batch)
                upcoming = None if len(fired) == batch else await service.next_moment(session=session)
            for moment in fired:
                self._metrics.fired.labels(moment.event_type).inc()
                self._metrics.lateness.observe(max(0.0, moment.lateness_seconds))
            total += len(fired)
            self.fired += len(fired)
            if len(fired) < batch:
                return total, upcoming

    def _announced_earlier(self, payload: str) -> bool:
        """Wake if the announced moment comes before the one we sleep towards."""
        try:
            moment = float(payload)
        except ValueError:
            return True
        return self._target is None or moment < self._target
