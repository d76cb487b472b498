"""Exact-time events: sleep until the earliest due moment, then fire what is reached. The one way to do it.

A service hands a `DueMomentScheduler` two functions of a session: `fire_reached`
claims up to `limit` reached moments (FOR UPDATE SKIP LOCKED) and writes each one's
state change and its outbox event, and `next_moment` reads the earliest armed
moment by the database's clock (one index probe). Each replica keeps a LISTEN on
the service's channel: a transaction that arms a moment calls `announce_moment`
(a NOTIFY sent on commit), so a replica asleep until a later moment wakes early.
The claim and the event commit together, so any number of replicas, restarted at
any point, fire each moment once. Used by the commitments scheduler (due soon,
overdue) and the customers survey cadence (survey due).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.listen import Listening
from shared.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

# When a reached moment is held by another transaction, look again this soon.
HELD_RETRY_SECONDS = 0.02


@dataclass(frozen=True)
class FiredMoment:
    """One moment fired: its event's type, and how long after the moment the event was written."""

    event_type: str
    lateness_seconds: float


class FireReached(Protocol):
    async def __call__(self, *, session: AsyncSession, limit: int) -> Sequence[FiredMoment]: ...


class NextMoment(Protocol):
    async def __call__(self, *, session: AsyncSession) -> tuple[datetime, float] | None: ...


@dataclass(frozen=True)
class Cadence:
    """How a scheduler spaces its looks at the table."""

    # Dense moments share a wake-up: at most this much lateness buys far fewer transactions.
    min_interval_seconds: float = 0.05
    batch_size: int = 500
    # A missed wake-up (a dropped LISTEN connection) costs at most this long.
    max_sleep_seconds: float = 30.0


class DueMomentMetrics:
    def __init__(self, registry: CollectorRegistry, *, prefix: str, moments: str) -> None:
        self.fired = Counter(f"{prefix}_due_events_fired", f"{moments} events written.", ["type"], registry=registry)
        self.lateness = Histogram(
            f"{prefix}_due_event_lateness_seconds",
            f"From a {moments.lower()} moment to its event being written.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
            registry=registry,
        )
        self.wake_ups = Counter(f"{prefix}_scheduler_wake_ups", "Times the scheduler woke.", registry=registry)


async def announce_moment(session: AsyncSession, channel: str, moment: datetime) -> None:
    """Tell the schedulers listening on `channel` (on commit) that a moment is armed at `moment`."""
    await session.execute(
        text("SELECT pg_notify(:channel, CAST(extract(epoch FROM CAST(:moment AS timestamptz)) AS text))"),
        {"channel": channel, "moment": moment},
    )


class DueMomentScheduler:
    """Fires a service's due moments at their time, in every replica, each once."""

    def __init__(
        self,
        *,
        dsn: str,
        channel: str,
        name: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        fire_reached: FireReached,
        next_moment: NextMoment,
        metrics: DueMomentMetrics,
        cadence: Cadence,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._fire = fire_reached
        self._next_moment = next_moment
        self._metrics = metrics
        self._cadence = cadence
        # The moment (database epoch) we sleep towards; None wakes on any announcement.
        self._target: float | None = None
        self._listening = Listening(dsn=dsn, channel=channel, name=name, wakes_on=self._announced_earlier)
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
        spacing = self._cadence.min_interval_seconds
        cap = self._cadence.max_sleep_seconds
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
        batch = self._cadence.batch_size
        total = 0
        while True:
            async with unit_of_work(self._sessionmaker) as session:
                fired = await self._fire(session=session, limit=batch)
                upcoming = None if len(fired) == batch else await self._next_moment(session=session)
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
