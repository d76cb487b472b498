"""The notifications service: `create_app(settings)` builds it."""

from __future__ import annotations

from fastapi import FastAPI

from services.notifications.config import Settings
from shared.service import build_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_service_app(
        settings=settings or Settings(),
        title="Notifications",
        description=(
            "Routes every event to the departments it concerns: their Kafka topic, an inbox, "
            "a live stream and signed webhooks."
        ),
        routers=[],
    )
