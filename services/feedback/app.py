"""The feedback service: `create_app(settings)` builds it."""

from __future__ import annotations

from fastapi import FastAPI

from services.feedback.config import Settings
from shared.service import build_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_service_app(
        settings=settings or Settings(),
        title="Feedback",
        description=(
            "Every complaint, compliment, suggestion, question and survey score: captured, "
            "triaged, tracked until the loop is closed, and measured."
        ),
        routers=[],
    )
