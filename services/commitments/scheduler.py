"""The due-moment scheduler of promises: due soon, then overdue, each fired once at its moment.

The design is shared/due_moments.py's (sleep until the earliest armed `next_event_at`
or an earlier announcement on `commitment_schedule`, claim with SKIP LOCKED, the event
in the claiming transaction); this module hands it the commitments' queries.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.repository import SCHEDULE_CHANNEL
from shared.db import asyncpg_dsn
from shared.due_moments import Cadence, DueMomentMetrics, DueMomentScheduler


def due_moment_scheduler(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], registry: CollectorRegistry | None = None
) -> DueMomentScheduler:
    """The scheduler that fires `commitment.due_soon` and `commitment.overdue`."""
    return DueMomentScheduler(
        dsn=asyncpg_dsn(settings.database_url),
        channel=SCHEDULE_CHANNEL,
        name="due-moment scheduler",
        sessionmaker=sessionmaker,
        fire_reached=service.fire_reached_moments,
        next_moment=service.next_moment,
        metrics=DueMomentMetrics(
            registry or CollectorRegistry(), prefix="cf_commitments", moments="Due-soon and overdue"
        ),
        cadence=Cadence(
            min_interval_seconds=settings.commitments_scheduler_min_interval_seconds,
            batch_size=settings.commitments_scheduler_batch_size,
            max_sleep_seconds=settings.commitments_scheduler_max_sleep_seconds,
        ),
    )
