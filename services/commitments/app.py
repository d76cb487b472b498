"""The commitments service: `create_app(settings)` builds it."""

from __future__ import annotations

from fastapi import FastAPI

from services.commitments.config import Settings
from shared.service import build_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    return build_service_app(
        settings=settings or Settings(),
        title="Commitments",
        description=(
            "Every promise made to a customer: owner, department, due date and outcome, with "
            "due-soon and overdue events the moment they happen."
        ),
        routers=[],
    )
