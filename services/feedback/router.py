"""HTTP endpoints of the feedback service: parse, then call one service function."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from services.feedback import service
from services.feedback.config import Settings
from services.feedback.repository import FeedbackFilter, Grouped
from services.feedback.schemas import (
    Bucket,
    Channel,
    Feedback,
    FeedbackDraft,
    FeedbackKind,
    FeedbackMetrics,
    FeedbackPage,
    FeedbackStatus,
    Product,
    StatusMove,
    Tag,
)
from services.feedback.triage import Triage
from shared.auth import Principal, authenticate, require_scope
from shared.db import DbSession, pooled_connection
from shared.hotpath import documented_request, json_body
from shared.idempotency import KEY_PARAMETER, idempotency_key_of, idempotent, json_response
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.types import CustomerId, Instant

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])

Reader = Annotated[Principal, Depends(require_scope("feedback:read"))]
Writer = Annotated[Principal, Depends(require_scope("feedback:write"))]


def _settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _triage_of(request: Request) -> Triage:
    triage: Triage = request.app.state.triage
    return triage


async def _settings(request: Request) -> Settings:
    return _settings_of(request)


ServiceSettings = Annotated[Settings, Depends(_settings)]
Since = Annotated[Instant | None, Query(description="Occurred at or after (RFC 3339 with a zone).")]
Until = Annotated[Instant | None, Query(description="Occurred before (RFC 3339 with a zone).")]
ProductFilter = Annotated[Product | None, Query()]
CustomerFilter = Annotated[CustomerId | None, Query()]


@router.post(
    "",
    status_code=201,
    response_model=Feedback,
    summary="Capture feedback",
    description="Stores the feedback with its sentiment and themes and emits `feedback.received`. "
    "Honours `Idempotency-Key`.",
    openapi_extra=documented_request(FeedbackDraft, parameters=[KEY_PARAMETER]),
)
async def capture_feedback(request: Request) -> Response:
    # The ingest hot path reads its own request (shared/hotpath.py says why); the order of the
    # checks is FastAPI's: the token, then the body.
    principal = authenticate(request, "feedback:write")
    draft = await json_body(request, FeedbackDraft)
    key = idempotency_key_of(request)
    settings, triage = _settings_of(request), _triage_of(request)
    if key is None:
        # One statement, atomic on its own, sent with the rows of captures in flight beside it.
        grouped = Grouped(request.app.state.feedback_inserts, request.app.state.runtime.pool)
        created = await service.capture(grouped, draft=draft, triage=triage, settings=settings)
        return json_response(201, created)
    async with pooled_connection(request) as connection:
        return await idempotent(
            session=connection,
            principal=principal,
            key=key,
            route=request.scope["path"],
            body=draft,
            create=lambda: service.capture(connection, draft=draft, triage=triage, settings=settings),
            status_code=201,
            ttl_hours=settings.idempotency_ttl_hours,
        )


@router.get("", response_model=FeedbackPage, summary="Find feedback, newest first")
async def find_feedback(
    session: DbSession,
    _: Reader,
    customer_id: CustomerFilter = None,
    kind: FeedbackKind | None = None,
    channel: Channel | None = None,
    status: FeedbackStatus | None = None,
    product: ProductFilter = None,
    tag: Annotated[Tag | None, Query()] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> FeedbackPage:
    where = FeedbackFilter(
        customer_id=customer_id,
        kind=kind,
        channel=channel,
        status=status,
        product=product,
        tag=tag,
        since=since,
        until=until,
    )
    return await service.find(session, where=where, cursor=cursor, limit=limit)


@router.get(
    "/metrics",
    response_model=FeedbackMetrics,
    summary="Customer-focus figures",
    description="Volume, NPS, CSAT, CES, compliments per complaint, the silent dissatisfied and word of mouth, "
    "over the feedback that occurred in [since, until); with `bucket`, also per week or month (UTC).",
)
async def feedback_metrics(
    session: DbSession,
    _: Reader,
    settings: ServiceSettings,
    since: Since = None,
    until: Until = None,
    customer_id: CustomerFilter = None,
    channel: Channel | None = None,
    product: ProductFilter = None,
    bucket: Bucket | None = None,
) -> FeedbackMetrics:
    where = FeedbackFilter(customer_id=customer_id, channel=channel, product=product, since=since, until=until)
    return await service.measure(session, where=where, bucket=bucket, settings=settings)


@router.get("/{feedback_id}", response_model=Feedback, summary="One feedback with its history")
async def get_feedback(feedback_id: uuid.UUID, session: DbSession, _: Reader) -> Feedback:
    return await service.get(session, feedback_id=feedback_id)


@router.patch(
    "/{feedback_id}",
    response_model=Feedback,
    summary="Move feedback along its lifecycle",
    description="new → acknowledged → in_progress → resolved → closed; reopened from resolved or closed, "
    "then acknowledged. Any other move is a 409. Emits `feedback.status_changed`.",
)
async def move_feedback(feedback_id: uuid.UUID, move: StatusMove, session: DbSession, principal: Writer) -> Feedback:
    return await service.move(session, feedback_id=feedback_id, move=move, principal=principal)
