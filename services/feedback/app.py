"""The feedback service: `create_app(settings)` builds it."""

from __future__ import annotations

from fastapi import FastAPI

from services.feedback.config import Settings
from services.feedback.repository import feedback_inserts
from services.feedback.router import router, verdict_router
from services.feedback.triage import Taxonomy, Triage
from services.feedback.verdicts import VerdictLinks
from shared.config import load_settings
from shared.service import build_service_app


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    # Loaded here so a broken taxonomy file stops the start, not a request.
    triage = Triage(Taxonomy.load(settings.feedback_taxonomy_file))
    app = build_service_app(
        settings=settings,
        title="Feedback",
        description=(
            "Every complaint, compliment, suggestion, question and survey score: captured, "
            "triaged, tracked until the loop is closed, and measured."
        ),
        routers=[router, verdict_router],
    )
    app.state.verdict_links = VerdictLinks.from_secret(
        settings.auth_secret.get_secret_value(), settings.feedback_public_url
    )
    app.state.triage = triage
    app.state.feedback_inserts = feedback_inserts(app.state.metrics)
    return app
