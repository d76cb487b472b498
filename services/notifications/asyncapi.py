"""`GET /asyncapi.json`: the AsyncAPI 3.0 document of every topic and event type.

Generated from the event catalogue (shared/asyncapi.py) with this
deployment's departments and topic prefix; like /openapi.json it needs no token.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shared.asyncapi import build_asyncapi

router = APIRouter(tags=["documentation"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of every topic and event type")
async def asyncapi_document(request: Request) -> dict[str, Any]:
    document: dict[str, Any] | None = getattr(request.app.state, "asyncapi", None)
    if document is None:
        settings = request.app.state.settings
        document = build_asyncapi(settings.departments, topic_prefix=settings.topic_prefix)
        request.app.state.asyncapi = document
    return document
