"""HTTP endpoints of the expectations service (contract §4)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import Response

from services.expectations import schemas, service
from services.expectations.config import Settings
from shared.auth import Principal, require_scope
from shared.db import DbSession
from shared.idempotency import Idempotency
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from shared.schemas import CustomerKind
from shared.settings_dependency import app_settings
from shared.themes import Taxonomy
from shared.types import Instant, SafeStr

router = APIRouter(prefix="/v1")

Reader = Annotated[Principal, Depends(require_scope("expectations:read"))]
Writer = Annotated[Principal, Depends(require_scope("expectations:write"))]
ExpectationSettings = Annotated[Settings, Depends(app_settings)]
CustomerIdFilter = Annotated[SafeStr | None, Query(min_length=1, max_length=128, description="The customer's id.")]
CustomerIdPath = Annotated[SafeStr, Path(min_length=1, max_length=128, description="The customer's id.")]
CustomerKindFilter = Annotated[CustomerKind | None, Query(description="Only internal or only external customers.")]
MAX_GAP_THEMES = 50


def _taxonomy_of(request: Request) -> Taxonomy:
    """The platform's theme taxonomy, loaded once at start (`app.py`)."""
    taxonomy: Taxonomy = request.app.state.taxonomy
    return taxonomy


@router.post(
    "/questions", status_code=201, response_model=schemas.Question, tags=["questions"], summary="Save a question"
)
async def create_question(
    question: schemas.QuestionCreate,
    session: DbSession,
    principal: Writer,
    idempotency: Idempotency,
) -> Response:
    """Save a prepared question; it is classified open-ended or closed, with guidance to reopen a closed one."""
    return await idempotency.respond(
        principal, body=question, create=lambda: service.record_question(session, question=question)
    )


@router.get("/questions", tags=["questions"], summary="List prepared questions, newest first")
async def list_questions(
    session: DbSession,
    _: Reader,
    topic: Annotated[SafeStr | None, Query(min_length=1, max_length=100)] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[schemas.Question]:
    return await service.list_questions(session, topic=topic, cursor=cursor, limit=limit)


@router.post(
    "/meetings",
    status_code=201,
    response_model=schemas.Meeting,
    tags=["meetings"],
    summary="Record a customer meeting",
)
async def create_meeting(
    meeting: schemas.MeetingCreate,
    session: DbSession,
    settings: ExpectationSettings,
    principal: Writer,
    idempotency: Idempotency,
) -> Response:
    """Record a meeting held by at least two distinct staff members (problem type `two-person-rule` otherwise)."""
    return await idempotency.respond(
        principal,
        body=meeting,
        create=lambda: service.record_meeting(session, meeting=meeting, departments=settings.departments),
    )


@router.get("/meetings/{meeting_id}", tags=["meetings"], summary="Get a meeting")
async def get_meeting(meeting_id: uuid.UUID, session: DbSession, _: Reader) -> schemas.Meeting:
    return await service.get_meeting(session, meeting_id=meeting_id)


@router.get("/meetings", tags=["meetings"], summary="List meetings, newest first")
async def list_meetings(
    session: DbSession,
    _: Reader,
    customer_id: CustomerIdFilter = None,
    customer_kind: CustomerKindFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[schemas.Meeting]:
    return await service.list_meetings(
        session, customer_id=customer_id, customer_kind=customer_kind, cursor=cursor, limit=limit
    )


@router.post(
    "/meetings/{meeting_id}/expectations",
    status_code=201,
    response_model=schemas.Expectation,
    tags=["expectations"],
    summary="Record an expectation heard in a meeting",
)
async def create_expectation(
    meeting_id: uuid.UUID,
    expectation: schemas.ExpectationCreate,
    request: Request,
    session: DbSession,
    principal: Writer,
    idempotency: Idempotency,
) -> Response:
    """Record the customer's words and our restatement; it stays `recorded` until the customer confirms.

    `themes` are the taxonomy's themes the statement and the restatement mention.
    """
    taxonomy = _taxonomy_of(request)
    return await idempotency.respond(
        principal,
        body=expectation,
        create=lambda: service.record_expectation(
            session, meeting_id=meeting_id, expectation=expectation, taxonomy=taxonomy
        ),
    )


@router.post("/expectations/{expectation_id}/confirm", tags=["expectations"], summary="Confirm our restatement")
async def confirm_expectation(
    expectation_id: uuid.UUID, confirmation: schemas.ConfirmationCreate, session: DbSession, _: Writer
) -> schemas.Expectation:
    """The customer confirmed our restatement. Confirming a confirmed version again is a no-op (200, no event)."""
    return await service.confirm_expectation(session, expectation_id=expectation_id, confirmation=confirmation)


@router.post(
    "/expectations/{expectation_id}/revise",
    response_model=schemas.Expectation,
    tags=["expectations"],
    summary="Revise an expectation (a new version)",
)
async def revise_expectation(
    expectation_id: uuid.UUID,
    expectation: schemas.ExpectationCreate,
    request: Request,
    session: DbSession,
    principal: Writer,
    idempotency: Idempotency,
) -> Response:
    """Record a new version (`version` + 1, back to `recorded`, `themes` found again); earlier ones stay in history."""
    taxonomy = _taxonomy_of(request)
    return await idempotency.respond(
        principal,
        body=expectation,
        create=lambda: service.revise_expectation(
            session, expectation_id=expectation_id, expectation=expectation, taxonomy=taxonomy
        ),
        status_code=200,
    )


@router.get(
    "/expectations/gaps",
    tags=["expectations"],
    summary="The demand backlog: capability gaps grouped by theme, most customers first",
)
async def gap_backlog(
    request: Request,
    session: DbSession,
    settings: ExpectationSettings,
    _: Reader,
    since: Annotated[Instant | None, Query(description="Gaps whose current version was recorded from then.")] = None,
    until: Annotated[Instant | None, Query(description="... and before then.")] = None,
    customer_kind: CustomerKindFilter = None,
    limit: Annotated[int, Query(ge=1, le=MAX_GAP_THEMES, description="Most themes returned.")] = 20,
) -> schemas.GapBacklog:
    """Expectations we `cannot_meet` or meet only `partial`ly (current versions), grouped by theme.

    Most distinct customers first; a few examples per theme in the customers' own words; gaps that
    mention no theme are grouped under `unthemed`.
    """
    return await service.gap_backlog(
        session,
        since=since,
        until=until,
        customer_kind=customer_kind,
        taxonomy=_taxonomy_of(request),
        themes=limit,
        examples=settings.expectations_gap_examples,
    )


@router.get("/expectations/{expectation_id}", tags=["expectations"], summary="Get an expectation with its history")
async def get_expectation(expectation_id: uuid.UUID, session: DbSession, _: Reader) -> schemas.Expectation:
    return await service.get_expectation(session, expectation_id=expectation_id)


@router.get("/expectations", tags=["expectations"], summary="List expectations, newest first")
async def list_expectations(
    session: DbSession,
    _: Reader,
    customer_id: CustomerIdFilter = None,
    meeting_id: uuid.UUID | None = None,
    status: schemas.ExpectationStatus | None = None,
    capability: schemas.Capability | None = None,
    customer_kind: CustomerKindFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[schemas.Expectation]:
    return await service.list_expectations(
        session,
        customer_id=customer_id,
        meeting_id=meeting_id,
        status=status,
        capability=capability,
        customer_kind=customer_kind,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/customers/{customer_id}/expectations",
    tags=["expectations"],
    summary="What a customer expects: current versions, key points first",
)
async def customer_expectations(
    customer_id: CustomerIdPath, session: DbSession, _: Reader
) -> schemas.CustomerExpectations:
    """The current version of each expectation, key points first, with the unconfirmed ones and the gaps."""
    return await service.customer_expectations(session, customer_id=customer_id)
