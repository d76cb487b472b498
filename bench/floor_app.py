"""The floor for feedback ingest: the same work per request with nothing in between.

A minimal FastAPI app on a raw asyncpg pool: validate the body with pydantic,
then one transaction that inserts the feedback row and an outbox row into the
feedback service's own tables. No auth, no triage, no ORM, no middleware: what
is left is the least this stack can do per request, measured under the same
load as the service (`python -m bench.feedback_ingest`).

    CF_FEEDBACK_DATABASE_URL=... uvicorn --factory bench.floor_app:create_app
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Literal

import asyncpg
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from pydantic import AwareDatetime, BaseModel, Field, StringConstraints

from shared.db import asyncpg_dsn


class Rating(BaseModel):
    scale: Literal["nps", "csat", "ces"]
    value: int = Field(ge=0, le=10)


Channel = Literal["web", "email", "phone", "chat", "survey", "focus_group", "meeting", "social", "in_person", "other"]


class Complaint(BaseModel):
    customer_id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    customer_kind: Literal["external", "internal"] = "external"
    channel: Channel
    kind: Literal["complaint", "compliment", "suggestion", "question", "survey_response"]
    text: str | None = Field(default=None, max_length=10_000)
    rating: Rating | None = None
    product: str | None = None
    tags: list[str] = Field(default_factory=list)
    occurred_at: AwareDatetime | None = None


_INSERT_FEEDBACK = """
INSERT INTO feedback (id, customer_id, customer_kind, channel, kind, text, rating_scale, rating_value, product,
    tags, occurred_at, status, sentiment_score, sentiment_label, sentiment_source, themes)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, coalesce($11, now()), 'new', 0, 'neutral', 'text', '{}')
RETURNING occurred_at, created_at
"""
_INSERT_OUTBOX = "INSERT INTO outbox_event (event_id, topic, key, event_type, value) VALUES ($1, $2, $3, $4, $5)"


def create_app() -> FastAPI:
    dsn = asyncpg_dsn(os.environ["CF_FEEDBACK_DATABASE_URL"])
    pool_size = int(os.environ.get("CF_DATABASE_POOL_SIZE", "10"))

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Same pool bounds as the service's engine (pool_size + max_overflow).
        async with asyncpg.create_pool(dsn, min_size=pool_size, max_size=2 * pool_size) as pool:
            app.state.pool = pool
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/feedback", status_code=201)
    async def capture(complaint: Complaint, request: Request) -> Response:
        feedback_id = uuid.uuid4()
        pool: asyncpg.Pool = request.app.state.pool
        rating = complaint.rating
        async with pool.acquire() as conn, conn.transaction():
            occurred_at, created_at = await conn.fetchrow(
                _INSERT_FEEDBACK,
                feedback_id,
                complaint.customer_id,
                complaint.customer_kind,
                complaint.channel,
                complaint.kind,
                complaint.text,
                rating.scale if rating else None,
                rating.value if rating else None,
                complaint.product,
                complaint.tags,
                complaint.occurred_at,
            )
            body = orjson.dumps(
                {
                    "id": feedback_id,
                    **complaint.model_dump(mode="json"),
                    "status": "new",
                    "occurred_at": _iso(occurred_at),
                    "created_at": _iso(created_at),
                }
            )
            await conn.execute(
                _INSERT_OUTBOX, uuid.uuid4(), "feedback.events", complaint.customer_id, "feedback.received", body
            )
        return Response(body, status_code=201, media_type="application/json")

    return app


def _iso(moment: datetime) -> str:
    return moment.isoformat()
