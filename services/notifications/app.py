"""The notifications service: `create_app(settings)` builds it."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from services.notifications.asyncapi import router as asyncapi_router
from services.notifications.config import Settings
from services.notifications.dashboard import router as dashboard_router
from services.notifications.repository import purges
from services.notifications.router import router
from services.notifications.routing import EventRouter
from services.notifications.secrets_at_rest import seal_plaintext_secrets
from services.notifications.stream import NotificationFeed, StreamSlots
from services.notifications.webhooks.dispatcher import WebhookDispatcher, WebhookMetrics
from services.notifications.webhooks.guard import AddressGuard
from shared.catalogue import ROUTED_TOPICS
from shared.config import load_settings
from shared.consumer import EventConsumer
from shared.db import asyncpg_dsn
from shared.observability import Metrics
from shared.purge import purging
from shared.service import ServiceRuntime, Worker, build_service_app
from shared.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    event_router = EventRouter(settings)
    guard = AddressGuard(allow_private=settings.webhook_allow_private)
    dsn = asyncpg_dsn(settings.database_url)

    def workers(runtime: ServiceRuntime) -> Sequence[tuple[str, Worker]]:
        consumers = [
            EventConsumer(
                settings=settings,
                sessionmaker=runtime.sessionmaker,
                producer=runtime.producer,
                metrics=runtime.metrics,
                name="router",
                topics=ROUTED_TOPICS,
                batch_handler=event_router.route,
                max_batch=settings.router_batch_size,
                tracer=runtime.tracer,
            )
            for _ in range(settings.router_consumers)
        ]
        event_router.tracer = runtime.tracer
        routers: list[tuple[str, Worker]] = [(f"router-{n}", consumer) for n, consumer in enumerate(consumers, 1)]
        purge = purging(
            runtime,
            *purges(
                read_notification_days=settings.purge_read_notification_days,
                webhook_delivery_days=settings.purge_webhook_delivery_days,
            ),
        )
        if not settings.webhooks_in_process:
            return [*routers, purge]
        dispatcher = WebhookDispatcher(
            settings=settings,
            metrics=webhook_metrics,
            guard=guard,
            intake_has_backlog=event_router.has_backlog,
            tracer=runtime.tracer,
        )
        return [*routers, ("webhooks", dispatcher), purge]

    async def start_feed(runtime: ServiceRuntime) -> None:
        runtime.start("stream-feed", feed)
        await _seal_plaintext_secrets(runtime, settings)

    app = build_service_app(
        settings=settings,
        title="Notifications",
        description=(
            "Routes every event to the departments it concerns: their Kafka topic, an inbox, "
            "a live stream and signed webhooks."
        ),
        routers=[router, dashboard_router, asyncapi_router],
        workers=workers,
        on_startup=start_feed,
    )
    metrics: Metrics = app.state.metrics
    webhook_metrics = WebhookMetrics(metrics)
    feed = NotificationFeed(dsn=dsn, queue_size=settings.sse_queue_size, metrics=metrics)
    app.state.feed = feed
    app.state.stream_slots = StreamSlots(settings.sse_max_streams_per_subject)
    app.state.webhook_metrics = webhook_metrics
    app.state.address_guard = guard
    _document_departments(app, settings.departments)
    return app


async def _seal_plaintext_secrets(runtime: ServiceRuntime, settings: Settings) -> None:
    """Encrypt the webhook secrets stored in plain text before they were encrypted at rest (once, at start)."""
    try:
        async with unit_of_work(runtime.sessionmaker) as session:
            await seal_plaintext_secrets(session, settings)
    except Exception as exc:
        # Not fatal: a plain secret still signs (secrets_at_rest.reveal), and the next start seals it.
        logger.warning("webhook secrets in plain text not encrypted yet: %s", exc)


def _document_departments(app: FastAPI, departments: list[str]) -> None:
    """Name the configured departments in the OpenAPI document wherever a department is asked for."""
    document = app.openapi

    def openapi() -> dict[str, Any]:
        schema = document()
        for operations in schema.get("paths", {}).values():
            for operation in operations.values():
                for parameter in operation.get("parameters", ()):
                    if parameter.get("name") == "department":
                        parameter["schema"]["enum"] = departments
        components = schema.get("components", {}).get("schemas", {})
        for name, field, where in (
            ("SubscriptionIn", "department", None),
            ("RoutingRuleIn", "departments", "items"),
        ):
            target = components.get(name, {}).get("properties", {}).get(field)
            if target is not None:
                (target[where] if where else target)["enum"] = departments
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
