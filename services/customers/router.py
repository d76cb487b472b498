"""HTTP endpoints of the customers service (contract §8)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from services.customers import schemas, service
from services.customers.config import Settings
from services.customers.survey import SurveyCadence
from shared.auth import Principal, require_scope
from shared.db import DbSession, ReadSessions
from shared.pagination import DEFAULT_LIMIT, Cursor, Limit, Page
from shared.schemas import CustomerKind
from shared.settings_dependency import app_settings
from shared.types import SafeStr

router = APIRouter(prefix="/v1", tags=["customers"])

Reader = Annotated[Principal, Depends(require_scope("customers:read"))]
Writer = Annotated[Principal, Depends(require_scope("customers:write"))]
CustomerSettings = Annotated[Settings, Depends(app_settings)]
CustomerIdPath = Annotated[SafeStr, Path(min_length=1, max_length=128, description="The customer's id.")]
EventType = Annotated[SafeStr | None, Query(max_length=100, description="Only entries of this event type.")]


@router.put(
    "/customers/{customer_id}",
    response_model=schemas.Customer,
    summary="Create or replace a customer's profile",
    responses={201: {"model": schemas.Customer, "description": "The customer was not known before."}},
)
async def put_customer(
    customer_id: CustomerIdPath,
    profile: schemas.ProfileIn,
    session: DbSession,
    settings: CustomerSettings,
    _: Writer,
    response: Response,
) -> schemas.Customer:
    """The whole profile (an omitted field takes its default): 201 when the customer was unknown, else 200.
    `customer.updated` when the profile changed; the same profile again changes nothing and emits nothing."""
    customer, created = await service.put_profile(
        session,
        customer_id=customer_id,
        profile=profile,
        departments=settings.departments,
        cadence=SurveyCadence.of(settings),
    )
    response.status_code = 201 if created else 200
    return customer


@router.get("/customers/{customer_id}", summary="Get a customer: profile, counts, last contact")
async def get_customer(
    customer_id: CustomerIdPath, session: DbSession, settings: CustomerSettings, _: Reader
) -> schemas.Customer:
    """The profile, counts, last contact and survey, and the health judged now with its reasons."""
    return await service.get_customer(
        session, customer_id=customer_id, settings=settings, cadence=SurveyCadence.of(settings)
    )


@router.get("/customers", summary="List customers, newest first")
async def list_customers(
    session: DbSession,
    settings: CustomerSettings,
    _: Reader,
    key_customer: bool | None = None,
    customer_kind: CustomerKind | None = None,
    survey_due: Annotated[
        bool | None, Query(description="Only customers whose survey came due and who have not answered since.")
    ] = None,
    health: Annotated[schemas.HealthBand | None, Query(description="Only customers of this health band.")] = None,
    silent_for_days: Annotated[
        int | None, Query(ge=0, le=36500, description="Only customers with no contact for at least this many days.")
    ] = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Page[schemas.Customer]:
    return await service.list_customers(
        session,
        key_customer=key_customer,
        customer_kind=customer_kind.value if customer_kind is not None else None,
        survey_due=survey_due,
        cadence=SurveyCadence.of(settings),
        health_band=health.value if health is not None else None,
        silent_for_days=silent_for_days,
        cursor=cursor,
        limit=limit,
    )


@router.get(
    "/customers/{customer_id}/timeline",
    response_model=Page[schemas.TimelineEntry],
    summary="Every event about a customer, newest first",
)
async def get_timeline(
    customer_id: CustomerIdPath,
    sessions: ReadSessions,
    _: Reader,
    type: EventType = None,
    limit: Limit = DEFAULT_LIMIT,
    cursor: Cursor = None,
) -> Response:
    """Each entry: the event's id, type, time and subject, a one-line summary, and lineage links."""
    async with sessions() as session:
        page = await service.timeline(session, customer_id=customer_id, event_type=type, cursor=cursor, limit=limit)
    return Response(page, media_type="application/json")


@router.get("/customers/{customer_id}/brief", summary="What two staff members need before they meet the customer")
async def get_brief(customer_id: CustomerIdPath, session: DbSession, _: Reader) -> schemas.Brief:
    """Unconfirmed expectations in the customer's own words, capability gaps, open and broken promises, recent
    complaint themes, the latest scores, awareness gaps, and open-ended questions of the bank matched to them."""
    return await service.brief(session, customer_id=customer_id)
