"""The feedback service: `create_app(settings)` builds it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from services.feedback.config import Settings
from services.feedback.repository import group_captures
from services.feedback.router import router, verdict_router
from services.feedback.spikes import spike_watch
from services.feedback.triage import Taxonomy, Triage
from services.feedback.verdicts import VerdictLinks
from shared.config import load_settings
from shared.purge import purging
from shared.service import ServiceRuntime, build_service_app


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
        workers=lambda runtime: [purging(runtime), spike_watch(settings, runtime.sessionmaker)],
        on_startup=lambda runtime: _group_captures(app, runtime),
    )
    app.state.verdict_links = VerdictLinks.from_secret(
        settings.auth_secret.get_secret_value(), settings.feedback_public_url
    )
    _document_verdict_pages(app)
    app.state.triage = triage
    return app


async def _group_captures(app: FastAPI, runtime: ServiceRuntime) -> None:
    """Captures that are their request's only write go together (services/feedback/repository.py)."""
    observe = runtime.metrics.group_commit_rows.labels("feedback").observe
    app.state.feedback_captures = group_captures(runtime.sessionmaker, observe=observe)


def _document_verdict_pages(app: FastAPI) -> None:
    """The verdict link answers a page for a browser, problems included: say so beside problem+json."""
    document = app.openapi
    page = {"text/html": {"schema": {"type": "string"}}}
    refusals = {
        "404": "The link is not valid (any forged, altered or foreign token)",
        "409": "The verdict was already given, or the feedback is no longer resolved",
        "410": "The link expired, or a later resolution replaced it",
        "422": "The answer is not a verdict",
    }

    def openapi() -> dict[str, Any]:
        schema = document()
        for operation in schema.get("paths", {}).get("/v1/verdicts/{token}", {}).values():
            responses = operation.setdefault("responses", {})
            for code, description in refusals.items():
                response = responses.setdefault(code, {"description": description, "content": {}})
                response.setdefault("content", {}).setdefault(
                    "application/problem+json", {"schema": {"$ref": "#/components/schemas/Problem"}}
                )
                response["content"].update(page)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
