"""The customers service: `create_app(settings)` builds it."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from services.customers.config import Settings
from services.customers.page import router as page_router
from services.customers.router import router
from services.customers.scheduler import survey_scheduler
from services.customers.silence import SilenceSweep
from services.customers.timeline import CustomerEvents
from shared.catalogue import ROUTED_SOURCE_TOPICS
from shared.config import load_settings
from shared.consumer import EventConsumer
from shared.purge import purging
from shared.service import ServiceRuntime, Worker, build_service_app

CONSUMER_NAME = "timeline"
HEALTH_SWEEP = "health-sweep"
SURVEY_SCHEDULER = "survey-scheduler"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)

    async def start_survey_scheduler(runtime: ServiceRuntime) -> None:
        # Started here rather than as a worker, which waits for the broker: the outbox
        # carries events through a broker outage, so surveys come due on time.
        if settings.run_workers:
            scheduler = survey_scheduler(
                settings=settings, sessionmaker=runtime.sessionmaker, registry=runtime.metrics.registry
            )
            runtime.start(SURVEY_SCHEDULER, scheduler)

    def workers(runtime: ServiceRuntime) -> Sequence[tuple[str, Worker]]:
        # A read model of the three services' events: its own group, exactly once through processed_event.
        consumer = EventConsumer(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            producer=runtime.producer,
            metrics=runtime.metrics,
            name=CONSUMER_NAME,
            topics=ROUTED_SOURCE_TOPICS,
            batch_handler=CustomerEvents(settings).handle,
            max_batch=settings.customers_batch_size,
            lanes=settings.customers_consumer_lanes,
            tracer=runtime.tracer,
        )
        sweep = SilenceSweep(settings=settings, sessionmaker=runtime.sessionmaker)
        return [(CONSUMER_NAME, consumer), (HEALTH_SWEEP, sweep), purging(runtime)]

    return build_service_app(
        settings=settings,
        title="Customers",
        description=(
            "Who our customers are (profiles, key and internal customers, contacts, awareness) and everything "
            "that happened with each: a timeline built from the feedback, expectations and commitments events."
        ),
        routers=[router, page_router],
        workers=workers,
        on_startup=start_survey_scheduler,
    )
