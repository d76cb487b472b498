"""HTTP endpoints of the feedback service: parse, then call one service function."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from services.feedback import service, verdict_page
from services.feedback.config import Settings
from services.feedback.repository import Captures, FeedbackFilter
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
    ThemeKey,
    ThemeTrends,
    TrendBucket,
    VerdictIn,
    VerdictLink,
    VerdictReceipt,
)
from services.feedback.triage import Triage
from services.feedback.verdicts import VerdictLinks
from shared.auth import Principal, require_scope
from shared.db import DbSession, request_session
from shared.errors import Problem, Unprocessable
from shared.idempotency import Idempotency, IdempotencyKey, IdempotentRequest
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit
from shared.schemas import CustomerKind
from shared.settings_dependency import app_settings
from shared.types import CustomerId, Instant

router = APIRouter(prefix="/v1/feedback", tags=["feedback"])
verdict_router = APIRouter(prefix="/v1/verdicts", tags=["verdicts"])

Reader = Annotated[Principal, Depends(require_scope("feedback:read"))]
Writer = Annotated[Principal, Depends(require_scope("feedback:write"))]


ServiceSettings = Annotated[Settings, Depends(app_settings)]


def _triage_of(request: Request) -> Triage:
    triage: Triage = request.app.state.triage
    return triage


@dataclass(frozen=True)
class CaptureWrites:
    """Where a capture writes: its Idempotency-Key's row and its feedback."""

    idempotency: IdempotentRequest
    captures: Captures


@contextlib.asynccontextmanager
async def _capture_writes(request: Request, key: str | None) -> AsyncIterator[CaptureWrites]:
    """A request session only for a capture with an Idempotency-Key (the key's row commits with the capture).

    Without a key the capture is its request's only write, and goes by group commit with those of concurrent
    requests: no session of its own is opened, saving its setup on the busiest route.
    """
    state = request.app.state
    if key is None:
        captures = Captures(None, state.feedback_captures, max_bytes=state.settings.max_event_bytes)
        yield CaptureWrites(IdempotentRequest.unkeyed(request), captures)
        return
    async with request_session(state.sessionmaker) as session:
        idempotency = IdempotentRequest(session, key, request.scope["path"], state.settings.idempotency_ttl_hours)
        yield CaptureWrites(idempotency, Captures(session, state.feedback_captures))


async def _links(request: Request) -> VerdictLinks:
    links: VerdictLinks = request.app.state.verdict_links
    return links


Links = Annotated[VerdictLinks, Depends(_links)]
Since = Annotated[Instant | None, Query(description="Occurred at or after (RFC 3339 with a zone).")]
Until = Annotated[Instant | None, Query(description="Occurred before (RFC 3339 with a zone).")]
ProductFilter = Annotated[Product | None, Query()]
CustomerFilter = Annotated[CustomerId | None, Query()]
CustomerKindFilter = Annotated[CustomerKind | None, Query(description="Only internal or only external customers.")]


@router.post(
    "",
    status_code=201,
    response_model=Feedback,
    summary="Capture feedback",
    description="Stores the feedback with its sentiment and themes and emits `feedback.received`. "
    "Honours `Idempotency-Key`.",
)
async def capture_feedback(
    request: Request, draft: FeedbackDraft, principal: Writer, key: IdempotencyKey = None
) -> Response:
    # The app's triage and settings read here, and the writes opened here rather than by a dependency with
    # `yield`: this is the busiest route. The capture commits when the block ends, before the response is sent.
    settings: Settings = request.app.state.settings
    triage = _triage_of(request)
    async with _capture_writes(request, key) as writes:
        return await writes.idempotency.respond(
            principal,
            body=draft,
            create=lambda: service.capture(writes.captures, draft=draft, triage=triage, settings=settings),
            status_code=201,
        )


@router.get("", response_model=FeedbackPage, summary="Find feedback, newest first")
async def find_feedback(
    session: DbSession,
    _: Reader,
    customer_id: CustomerFilter = None,
    customer_kind: CustomerKindFilter = None,
    kind: FeedbackKind | None = None,
    channel: Channel | None = None,
    status: FeedbackStatus | None = None,
    product: ProductFilter = None,
    tag: Annotated[Tag | None, Query()] = None,
    theme: Annotated[ThemeKey | None, Query(description="A theme's key: feedback with that theme.")] = None,
    since: Since = None,
    until: Until = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> FeedbackPage:
    where = FeedbackFilter(
        customer_id=customer_id,
        customer_kind=customer_kind,
        kind=kind,
        channel=channel,
        status=status,
        product=product,
        tag=tag,
        theme=theme,
        since=since,
        until=until,
    )
    return await service.find(session, where=where, cursor=cursor, limit=limit)


@router.get(
    "/metrics",
    response_model=FeedbackMetrics,
    summary="Customer-focus figures",
    description="Volume, NPS, CSAT, CES, compliments per complaint, the silent dissatisfied and word of mouth, "
    "the themes and the customers' verdicts, over the feedback that occurred in [since, until); "
    "with `bucket`, also per week or month (UTC).",
)
async def feedback_metrics(
    session: DbSession,
    _: Reader,
    settings: ServiceSettings,
    since: Since = None,
    until: Until = None,
    customer_id: CustomerFilter = None,
    customer_kind: CustomerKindFilter = None,
    channel: Channel | None = None,
    product: ProductFilter = None,
    bucket: Bucket | None = None,
) -> FeedbackMetrics:
    where = FeedbackFilter(
        customer_id=customer_id,
        customer_kind=customer_kind,
        channel=channel,
        product=product,
        since=since,
        until=until,
    )
    return await service.measure(session, where=where, bucket=bucket, settings=settings)


@router.get(
    "/themes",
    response_model=ThemeTrends,
    summary="Theme trends",
    description="Each theme's feedback and complaints per UTC day, week (from Monday) or month of the feedback "
    "that occurred in [since, until) (default: from the first themed feedback to now), every period listed. "
    "More periods than `CF_FEEDBACK_MAX_METRIC_PERIODS` (default 1000) is a 422: narrow the range or take a "
    "longer bucket.",
)
async def theme_trends(
    session: DbSession,
    _: Reader,
    settings: ServiceSettings,
    since: Since = None,
    until: Until = None,
    bucket: TrendBucket = TrendBucket.WEEK,
    kind: FeedbackKind | None = None,
    customer_kind: CustomerKindFilter = None,
) -> ThemeTrends:
    where = FeedbackFilter(kind=kind, customer_kind=customer_kind, since=since, until=until)
    return await service.theme_trends(session, where=where, bucket=bucket, settings=settings)


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
async def move_feedback(
    feedback_id: uuid.UUID,
    move: StatusMove,
    session: DbSession,
    principal: Writer,
    links: Links,
    settings: ServiceSettings,
) -> Feedback:
    return await service.move(
        session, feedback_id=feedback_id, move=move, principal=principal, links=links, settings=settings
    )


@router.post(
    "/{feedback_id}/verdict",
    response_model=Feedback,
    summary="Record the customer's verdict on a resolution, for them",
    description="Only for a feedback in `resolved` (else 409): accepted → `closed`, rejected → `reopened`, "
    "each with its `feedback.status_changed`, plus one `feedback.verdict_given` (`given_by: staff`). "
    "Honours `Idempotency-Key`.",
)
async def give_verdict(
    feedback_id: uuid.UUID,
    verdict: VerdictIn,
    session: DbSession,
    principal: Writer,
    settings: ServiceSettings,
    idempotency: Idempotency,
) -> Response:
    return await idempotency.respond(
        principal,
        body=verdict,
        create=lambda: service.give_verdict(
            session, feedback_id=feedback_id, verdict=verdict, principal=principal, settings=settings
        ),
        status_code=200,
    )


_HTML_OR_JSON = {
    "content": {"text/html": {"schema": {"type": "string"}}},
    "description": "An HTML page unless the request prefers JSON.",
}


def _wants_html(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "application/json" not in accept


@verdict_router.get(
    "/{token}",
    response_model=VerdictLink,
    responses={200: _HTML_OR_JSON},
    summary="The customer's verdict page (no bearer token: the link is the credential)",
    description="HTML (a form that works without JavaScript) unless `Accept` prefers `application/json`. "
    "404 for a link that is not valid, 410 when it expired or a later resolution replaced it, "
    "409 when it was used.",
)
async def verdict_link(token: str, request: Request, session: DbSession, links: Links) -> Response:
    html = _wants_html(request)
    try:
        link = await service.verdict_link(session, links=links, token=token)
    except Problem as problem:
        if html:
            return verdict_page.problem(problem)
        raise
    if html:
        return verdict_page.form(link)
    return JSONResponse(link.model_dump(mode="json"), headers=verdict_page.HEADERS)


@verdict_router.post(
    "/{token}",
    response_model=VerdictReceipt,
    responses={200: _HTML_OR_JSON},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/VerdictIn"}},
                "application/x-www-form-urlencoded": {"schema": {"$ref": "#/components/schemas/VerdictIn"}},
            },
        }
    },
    summary="Give the verdict through the link, once (the page's form, or JSON)",
    description="Accepted → `closed`, rejected → `reopened`, with `given_by: customer`. A second use is a 409.",
)
async def give_verdict_by_link(token: str, request: Request, session: DbSession, links: Links) -> Response:
    content_type = request.headers.get("content-type", "")
    from_form = content_type.startswith("application/x-www-form-urlencoded")
    try:
        verdict = _verdict_from(await request.body(), from_form=from_form)
    except Unprocessable as problem:
        if not from_form:
            raise
        try:
            link = await service.verdict_link(session, links=links, token=token)
        except Problem as refused:
            return verdict_page.problem(refused)
        return verdict_page.form(link, error=problem.detail, status_code=422)
    try:
        receipt = await service.give_verdict_by_link(session, links=links, token=token, verdict=verdict)
    except Problem as problem:
        if from_form:
            return verdict_page.problem(problem)
        raise
    if from_form:
        return verdict_page.thanks(receipt.status)
    return JSONResponse(receipt.model_dump(mode="json"), headers=verdict_page.HEADERS)


def _verdict_from(body: bytes, *, from_form: bool) -> VerdictIn:
    """The verdict in a form or JSON body; a 422 naming the field otherwise."""
    try:
        if not from_form:
            return VerdictIn.model_validate_json(body or b"null")
        fields = {name: values[0] for name, values in parse_qs(body.decode(), keep_blank_values=True).items()}
        answer = {
            "accepted": fields.get("accepted"),
            "fairness": fields.get("fairness") or None,
            "comment": fields.get("comment") or None,
        }
        return VerdictIn.model_validate(answer)
    except ValidationError as exc:
        errors = [{"loc": ["body", *err["loc"]], "msg": err["msg"]} for err in exc.errors()]
        fields_named = ", ".join(str(err["loc"][-1]) for err in errors if len(err["loc"]) > 1) or "body"
        raise Unprocessable(f"Please check: {fields_named}.", errors=errors) from None
    except UnicodeDecodeError:
        raise Unprocessable("The form is not UTF-8.") from None
