"""The survey scheduler: `customer.survey_due` once per due moment, within a second of it.

The design is shared/due_moments.py's, the commitments scheduler's too (sleep until the
earliest moment or an earlier announcement on `customer_survey_schedule`, claim with
SKIP LOCKED, the event in the claiming transaction); this module hands it the
customers' queries (services/customers/service.py).
"""

from __future__ import annotations

from functools import partial

from prometheus_client import CollectorRegistry
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.customers import service
from services.customers.config import Settings
from services.customers.survey import SCHEDULER_MAX_SLEEP, SURVEY_CHANNEL, SurveyCadence
from shared.db import asyncpg_dsn
from shared.due_moments import Cadence, DueMomentMetrics, DueMomentScheduler


def survey_scheduler(
    *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession], registry: CollectorRegistry | None = None
) -> DueMomentScheduler:
    """The scheduler that fires `customer.survey_due`."""
    cadence = SurveyCadence.of(settings)
    return DueMomentScheduler(
        dsn=asyncpg_dsn(settings.database_url),
        channel=SURVEY_CHANNEL,
        name="survey scheduler",
        sessionmaker=sessionmaker,
        fire_reached=partial(service.fire_reached_surveys, cadence=cadence),
        next_moment=partial(service.next_survey_moment, cadence=cadence),
        metrics=DueMomentMetrics(registry or CollectorRegistry(), prefix="cf_customers", moments="Survey-due"),
        cadence=Cadence(max_sleep_seconds=SCHEDULER_MAX_SLEEP.total_seconds()),
    )
