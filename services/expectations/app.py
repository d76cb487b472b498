"""The expectations service: `create_app(settings)` builds it."""

from __future__ import annotations

from fastapi import FastAPI

from services.expectations.config import Settings
from services.expectations.router import router
from shared.config import load_settings
from shared.purge import purging
from shared.service import build_service_app
from shared.themes import Taxonomy


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings(Settings)
    # Loaded here so a broken taxonomy file stops the start, not a request.
    taxonomy = Taxonomy.load(settings.taxonomy_file)
    app = build_service_app(
        settings=settings,
        title="Expectations",
        description=(
            "Prepared open-ended questions, two-person customer meetings, and the "
            "expectations they clarify: the customer's words, our restatement, confirmation "
            "and capability."
        ),
        routers=[router],
        workers=lambda runtime: [purging(runtime)],
    )
    app.state.taxonomy = taxonomy
    return app
