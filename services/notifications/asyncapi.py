"""`GET /asyncapi.json`: the AsyncAPI 3.0 document of every topic and event type.

Generated from the event catalogue (shared/asyncapi.py) with this
deployment's departments and topic prefix; like /openapi.json it needs no token.
The payloads are the publishing services' REST representations: the one place
where this service imports the others' schemas, as it documents their events.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel

from services.commitments import schemas as commitments
from services.customers import schemas as customers
from services.expectations import schemas as expectations
from services.feedback import schemas as feedback
from services.notifications import schemas as notifications
from shared import catalogue
from shared.asyncapi import build_asyncapi
from shared.catalogue import EventSpec

EVENT_PAYLOADS: dict[EventSpec, type[BaseModel]] = {
    catalogue.FEEDBACK_RECEIVED: feedback.Feedback,
    catalogue.FEEDBACK_STATUS_CHANGED: feedback.FeedbackStatusChanged,
    catalogue.FEEDBACK_VERDICT_GIVEN: feedback.Feedback,
    catalogue.FEEDBACK_THEME_SPIKING: feedback.ThemeSpike,
    catalogue.MEETING_RECORDED: expectations.Meeting,
    catalogue.EXPECTATION_RECORDED: expectations.Expectation,
    catalogue.EXPECTATION_CONFIRMED: expectations.Expectation,
    catalogue.EXPECTATION_GAP_IDENTIFIED: expectations.Expectation,
    catalogue.QUESTION_CREATED: expectations.Question,
    catalogue.COMMITMENT_CREATED: commitments.Commitment,
    catalogue.COMMITMENT_RESCHEDULED: commitments.CommitmentRescheduled,
    catalogue.COMMITMENT_DUE_SOON: commitments.Commitment,
    catalogue.COMMITMENT_OVERDUE: commitments.Commitment,
    catalogue.COMMITMENT_MET: commitments.Commitment,
    catalogue.COMMITMENT_CANCELLED: commitments.Commitment,
    catalogue.CUSTOMER_UPDATED: customers.Customer,
    catalogue.CUSTOMER_SURVEY_DUE: customers.Customer,
    catalogue.CUSTOMER_HEALTH_CHANGED: customers.CustomerHealthChanged,
    catalogue.SUBSCRIPTION_DISABLED: notifications.Subscription,
}

router = APIRouter(tags=["documentation"])


@router.get("/asyncapi.json", summary="AsyncAPI 3.0 document of every topic and event type")
async def asyncapi_document(request: Request) -> dict[str, Any]:
    document: dict[str, Any] | None = getattr(request.app.state, "asyncapi", None)
    if document is None:
        settings = request.app.state.settings
        document = build_asyncapi(EVENT_PAYLOADS, settings.departments, topic_prefix=settings.topic_prefix)
        request.app.state.asyncapi = document
    return document
