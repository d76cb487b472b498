"""HTTP routes of the commitments service (contract §5)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Body, Depends, Path, Query
from fastapi.responses import JSONResponse, Response

from services.commitments import service
from services.commitments.config import Settings
from services.commitments.repository import CommitmentFilter
from services.commitments.schemas import (
    Cancellation,
    Commitment,
    CommitmentMetrics,
    CommitmentRescheduled,
    Completion,
    Kind,
    NewCommitment,
    PolicyName,
    Rescheduling,
    ResponsePolicies,
    ResponsePolicy,
    ResponsePolicyIn,
    SourceType,
    Status,
)
from shared.auth import Principal, require_scope
from shared.db import DbSession, ReadSessions
from shared.idempotency import Idempotency
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from shared.schemas import CustomerKind
from shared.settings_dependency import app_settings
from shared.types import Instant, SafeStr

router = APIRouter(prefix="/v1/commitments", tags=["commitments"])
policy_router = APIRouter(prefix="/v1/response-policies", tags=["response policies"])

Reader = Annotated[Principal, Depends(require_scope("commitments:read"))]
Writer = Annotated[Principal, Depends(require_scope("commitments:write"))]


JSON = "application/json"
CommitmentSettings = Annotated[Settings, Depends(app_settings)]
CustomerKindFilter = Annotated[CustomerKind | None, Query(description="Only internal or only external customers.")]


@router.post("", status_code=201, response_model=Commitment, summary="Make a promise to a customer")
async def create_commitment(
    new: NewCommitment,
    session: DbSession,
    settings: CommitmentSettings,
    principal: Writer,
    idempotency: Idempotency,
) -> Response:
    return await idempotency.respond(
        principal, body=new, create=lambda: service.create(session=session, settings=settings, new=new), status_code=201
    )


@router.get("", response_model=Page[Commitment], summary="List commitments, newest first")
async def list_commitments(
    sessions: ReadSessions,
    settings: CommitmentSettings,
    _: Reader,
    customer_id: SafeStr | None = None,
    department: SafeStr | None = None,
    owner_id: SafeStr | None = None,
    status: Annotated[list[Status] | None, Query(description="Repeat to match any of several.")] = None,
    due_before: Annotated[Instant | None, Query(description="Only promises due strictly before this.")] = None,
    source_type: SourceType | None = None,
    source_id: SafeStr | None = None,
    kind: Annotated[list[Kind] | None, Query(description="Repeat to match any of several.")] = None,
    customer_kind: CustomerKindFilter = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    # A busy read: its session is opened where it reads, and the page is serialized once, by pydantic's core.
    where = CommitmentFilter(
        customer_id=customer_id,
        department=department,
        owner_id=owner_id,
        statuses=status or (),
        due_before=due_before,
        source_type=source_type,
        source_id=source_id,
        kinds=kind or (),
        customer_kind=customer_kind.value if customer_kind is not None else None,
    )
    async with sessions() as session:
        items, next_cursor = await service.list_page(
            session=session, settings=settings, where=where, cursor=cursor, limit=limit
        )
    return Response(Page[Commitment](items=items, next_cursor=next_cursor).model_dump_json(), media_type=JSON)


@router.get(
    "/metrics",
    response_model=CommitmentMetrics,
    summary="Accountability per department and per owner for promises due in a window",
)
async def commitment_metrics(
    sessions: ReadSessions,
    settings: CommitmentSettings,
    _: Reader,
    since: Annotated[Instant | None, Query(description="Promises due at or after this.")] = None,
    until: Annotated[Instant | None, Query(description="Promises due before this.")] = None,
    department: SafeStr | None = None,
    owner_id: SafeStr | None = None,
    customer_kind: CustomerKindFilter = None,
) -> Response:
    # A busy read, as the list: its own session, serialized once.
    async with sessions() as session:
        metrics = await service.metrics(
            session=session,
            settings=settings,
            since=since,
            until=until,
            department=department,
            owner_id=owner_id,
            customer_kind=customer_kind.value if customer_kind is not None else None,
        )
    return Response(metrics.model_dump_json(), media_type=JSON)


@router.get("/{commitment_id}", summary="One commitment")
async def get_commitment(commitment_id: uuid.UUID, session: DbSession, _: Reader) -> Commitment:
    return await service.get(session=session, commitment_id=commitment_id)


@router.post("/{commitment_id}/complete", summary="Keep the promise: met on time or met late, by the clock")
async def complete_commitment(
    commitment_id: uuid.UUID,
    session: DbSession,
    _: Writer,
    completion: Annotated[Completion | None, Body()] = None,
) -> Commitment:
    return await service.complete(session=session, commitment_id=commitment_id, completion=completion or Completion())


@router.post("/{commitment_id}/reschedule", summary="Move the due date, with a reason")
async def reschedule_commitment(
    commitment_id: uuid.UUID,
    rescheduling: Rescheduling,
    session: DbSession,
    settings: CommitmentSettings,
    _: Writer,
) -> CommitmentRescheduled:
    return await service.reschedule(
        session=session, settings=settings, commitment_id=commitment_id, rescheduling=rescheduling
    )


@router.post("/{commitment_id}/cancel", summary="Cancel the promise")
async def cancel_commitment(
    commitment_id: uuid.UUID,
    session: DbSession,
    _: Writer,
    cancellation: Annotated[Cancellation | None, Body()] = None,
) -> Commitment:
    return await service.cancel(
        session=session, commitment_id=commitment_id, cancellation=cancellation or Cancellation()
    )


@policy_router.get("", summary="Every response policy, by name")
async def list_response_policies(session: DbSession, _: Reader) -> ResponsePolicies:
    return await service.list_policies(session=session)


@policy_router.put(
    "/{name}",
    response_model=ResponsePolicy,
    responses={201: {"model": ResponsePolicy, "description": "Created."}},
    summary="Create or replace a response policy: which feedback becomes which promises, how soon",
)
async def put_response_policy(
    name: Annotated[PolicyName, Path(description="Lower case letters, digits, `_` and `-`; up to 64.")],
    policy: ResponsePolicyIn,
    session: DbSession,
    settings: CommitmentSettings,
    _: Writer,
) -> Response:
    stored, created = await service.put_policy(session=session, settings=settings, name=name, policy=policy)
    return JSONResponse(stored.model_dump(mode="json"), status_code=201 if created else 200)


@policy_router.delete("/{name}", status_code=204, summary="Delete a response policy (promises made stay)")
async def delete_response_policy(name: PolicyName, session: DbSession, _: Writer) -> Response:
    await service.delete_policy(session=session, name=name)
    return Response(status_code=204)
