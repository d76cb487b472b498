"""The commitments service: `create_app(settings)` builds it."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI

from services.commitments.config import Settings
from services.commitments.responses import FeedbackResponses
from services.commitments.router import policy_router, router
from services.commitments.scheduler import due_moment_scheduler
from shared.catalogue import FEEDBACK_RECEIVED
from shared.config import load_settings
from shared.consumer import EventConsumer
from shared.purge import purging
from shared.service import ServiceRuntime, Worker, build_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)

    async def start_scheduler(runtime: ServiceRuntime) -> None:
        # Started here rather than as a worker, which waits for the broker: the
        # outbox carries events through a broker outage, so moments fire on time.
        if settings.run_workers:
            scheduler = due_moment_scheduler(
                settings=settings, sessionmaker=runtime.sessionmaker, registry=runtime.metrics.registry
            )
            runtime.start("due-moment-scheduler", scheduler)

    def workers(runtime: ServiceRuntime) -> Sequence[tuple[str, Worker]]:
        # Every complaint is a promise: feedback events make and meet the response promises.
        if not settings.commitments_response_promises:
            return [purging(runtime)]
        consumer = EventConsumer(
            settings=settings,
            sessionmaker=runtime.sessionmaker,
            producer=runtime.producer,
            metrics=runtime.metrics,
            name="feedback-responses",
            topics=[FEEDBACK_RECEIVED.topic],
            batch_handler=FeedbackResponses(settings).handle,
            tracer=runtime.tracer,
        )
        return [("feedback-responses", consumer), purging(runtime)]

    return build_service_app(
        settings=settings,
        title="Commitments",
        description=(
            "Every promise made to a customer: owner, department, due date and outcome, with "
            "due-soon and overdue events the moment they happen."
        ),
        routers=[router, policy_router],
        workers=workers,
        on_startup=start_scheduler,
    )
