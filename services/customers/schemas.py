"""Request bodies and REST representations of the customers service.

`Customer` is also the `data` of `customer.updated` (the catalogue names it),
exactly what `GET /v1/customers/{customer_id}` returns.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, PlainSerializer, StringConstraints

from shared.schemas import CustomerKind, Input, Output
from shared.types import Instant, storable

Storable = AfterValidator(storable)
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]
StaffId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), Storable]
Segment = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Storable]
Department = Annotated[str, StringConstraints(min_length=1, max_length=64), Storable]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
# Written as a JSON string so that no digit is lost to a float ("125000.50"); a number is accepted too.
Amount = Annotated[
    Decimal, Field(ge=0, max_digits=20, decimal_places=4, allow_inf_nan=False), PlainSerializer(str, return_type=str)
]


class LifetimeValue(Input):
    amount: Amount = Field(description="A decimal amount, at most 4 places; returned as a string.")
    currency: Currency = Field(description="ISO 4217 code, upper case (`EUR`).")


class Contact(Input):
    """One of our staff the customer should call."""

    staff_id: StaffId
    name: Name
    department: Department = Field(description="One of the configured departments (`CF_DEPARTMENTS`).")


class Awareness(Input):
    """Whether the customer knows we exist, what we can do, and whom to call: each true, false or null (unknown)."""

    knows_we_exist: bool | None = None
    knows_our_capabilities: bool | None = None
    knows_who_to_contact: bool | None = None
    checked_at: Instant | None = Field(default=None, description="When these were last checked with the customer.")


class ProfileIn(Input):
    """The whole profile: a `PUT` replaces it, and an omitted field takes its default."""

    name: Name | None = None
    customer_kind: CustomerKind = CustomerKind.EXTERNAL
    key_customer: bool = False
    segment: Segment | None = None
    lifetime_value: LifetimeValue | None = None
    supplying_department: Department | None = Field(
        default=None,
        description="For an internal customer: the department whose work it receives (one of `CF_DEPARTMENTS`).",
    )
    contacts: list[Contact] = Field(default_factory=list, max_length=50)
    awareness: Awareness = Field(default_factory=Awareness)


class Counts(Output):
    feedback: int = Field(description="Feedback items received from the customer.")
    open_complaints: int = Field(description="Complaints not resolved or closed.")
    open_promises: int = Field(description="Promises open, due soon or overdue.")
    broken_promises: int = Field(description="Promises broken (`kept` false: overdue, met late, excuses).")
    unconfirmed_expectations: int = Field(description="Expectations whose restatement the customer has not confirmed.")
    capability_gaps: int = Field(description="Expectations we can meet only partly or not at all.")


class HealthBand(StrEnum):
    GREEN = "green"
    AMBER = "amber"
    RED = "red"


class HealthReason(Output):
    factor: str = Field(
        description="`nps`, `csat`, `ces`, `open_complaints`, `broken_promises`, `unconfirmed_expectations`, "
        "`capability_gaps` or `silence`."
    )
    effect: int = Field(description="The points this factor takes off the score (negative).")
    detail: str = Field(description="In words: what the factor is now (`2 open complaints`).")


class Health(Output):
    """Rule-based and explainable: 100 less each factor's points (weights are `CF_CUSTOMERS_HEALTH_*`)."""

    score: int = Field(ge=0, le=100)
    band: HealthBand
    reasons: list[HealthReason] = Field(description="Each factor that took points off, largest first.")


class Customer(Output):
    customer_id: str
    name: str | None
    customer_kind: CustomerKind
    key_customer: bool
    segment: str | None
    lifetime_value: LifetimeValue | None
    supplying_department: str | None
    contacts: list[Contact]
    awareness: Awareness
    profiled: bool = Field(
        description="Whether a profile was given (`PUT`); false for a customer known only from events."
    )
    health: Health = Field(description="Judged now (silence included) from the customer's latest state.")
    last_contact_at: datetime | None = Field(description="The latest feedback or meeting of the customer.")
    last_survey_at: datetime | None = Field(description="The latest survey response (or rated feedback).")
    next_survey_due_at: datetime = Field(
        description="When the customer is next due for a survey (`customer.survey_due` fires then)."
    )
    survey_due: bool = Field(description="A survey came due (`customer.survey_due`) and no survey response came since.")
    counts: Counts
    first_seen_at: datetime = Field(description="When the customer was first seen, in an event or a `PUT`.")
    created_at: datetime
    updated_at: datetime = Field(description="When the profile last changed.")


class Link(Output):
    """Lineage: what a timeline entry's resource came from (`source`), or belongs to (`meeting`)."""

    rel: str
    type: str
    id: str


class TimelineEntry(Output):
    event_id: str
    type: str
    time: datetime
    subject: str
    summary: str
    links: list[Link]


class CustomerHealthChanged(Customer):
    """`customer.health_changed`: the customer as `GET` returns it, and the band it left."""

    previous_band: HealthBand


# The meeting brief (GET /v1/customers/{customer_id}/brief)


class BriefExpectation(Output):
    """An expectation in the customer's own words (`statement`), with our restatement."""

    expectation_id: str
    statement: str | None = Field(description="What the customer said, in their own words.")
    restatement: str | None
    priority: str | None
    capability: str | None = Field(description="`can_meet`, `partial` or `cannot_meet`.")
    meeting_id: str | None
    updated_at: datetime


class BriefPromise(Output):
    commitment_id: str
    title: str | None
    department: str | None
    due_at: datetime | None
    status: str | None
    broken_because: str | None = Field(description="Why a broken promise is broken (null while open).")
    broken_at: datetime | None = Field(description="When it was first seen broken.")


class ComplaintTheme(Output):
    theme: str
    complaints: int = Field(description="Complaints with this theme in the recent window.")
    last_at: datetime | None = Field(description="When the latest of them was made.")


class Score(Output):
    scale: str = Field(description="`nps`, `csat` or `ces`.")
    value: float
    at: datetime | None = Field(description="When the customer gave it.")
    feedback_id: str


class AwarenessGap(Output):
    question: str = Field(description="`knows_we_exist`, `knows_our_capabilities` or `knows_who_to_contact`.")
    answer: bool | None = Field(description="False: they do not; null: nobody has asked.")


class SuggestedQuestion(Output):
    question_id: str
    text: str
    topic: str
    themes: list[str] = Field(description="The brief's themes this question's topic matched.")


class Brief(Output):
    """What two staff members need before they meet the customer."""

    customer_id: str
    name: str | None
    unconfirmed_expectations: list[BriefExpectation]
    capability_gaps: list[BriefExpectation]
    open_promises: list[BriefPromise]
    broken_promises: list[BriefPromise]
    complaint_themes: list[ComplaintTheme] = Field(description="Themes of the complaints of the last 90 days.")
    latest_scores: list[Score] = Field(description="The latest NPS, CSAT and CES the customer gave.")
    awareness_gaps: list[AwarenessGap]
    suggested_questions: list[SuggestedQuestion] = Field(
        description="Open-ended questions of the bank whose topic matches a complaint theme or an awareness gap."
    )
