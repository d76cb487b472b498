"""Request bodies and REST representations of the expectations service.

`Meeting` and `Expectation` are also the `data` of their events (the
catalogue names them), so they are frozen and exactly what the API returns.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from services.expectations.questions import Rule
from shared.schemas import CustomerKind, Input, Output
from shared.types import CustomerId, Instant, storable

# After the constraints, so that text of only spaces is stripped before its length is checked.
Storable = AfterValidator(storable)
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]
Words = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000), Storable]
Sentence = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000), Storable]
Topic = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100), Storable]
StaffId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), Storable]
OptionalText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=2000), Storable]
Notes = Annotated[str, StringConstraints(max_length=10_000), Storable]


class Priority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class Capability(StrEnum):
    CAN_MEET = "can_meet"
    PARTIAL = "partial"
    CANNOT_MEET = "cannot_meet"


class ExpectationStatus(StrEnum):
    RECORDED = "recorded"
    CONFIRMED = "confirmed"


# Questions


class QuestionCreate(Input):
    text: Sentence = Field(
        description="The question as it will be asked.", examples=["What do you like about the new portal?"]
    )
    topic: Topic = Field(description="What the question is about, for finding it again.", examples=["onboarding"])


class Question(Output):
    id: uuid.UUID
    text: str
    topic: str
    open_ended: bool = Field(description="False when it can be answered yes, no, a number or one of our options.")
    rule: Rule = Field(description="The classification rule that decided (see the service README).")
    guidance: str | None = Field(description="For a closed question, how to reopen it; null when open-ended.")
    created_at: datetime


# Meetings


class Attendee(Input):
    staff_id: StaffId
    name: ShortText
    department: ShortText = Field(description="One of the configured departments (`CF_DEPARTMENTS`).")


class CustomerParticipant(Input):
    name: ShortText
    role: OptionalText | None = None


class MeetingCreate(Input):
    customer_id: CustomerId
    customer_kind: CustomerKind = CustomerKind.EXTERNAL
    held_at: Instant = Field(description="When the meeting was held; not in the future.")
    attendees: list[Attendee] = Field(
        max_length=50, description="Our staff: at least two distinct `staff_id`s, one asks while the other listens."
    )
    customer_participants: list[CustomerParticipant] = Field(min_length=1, max_length=50)
    question_ids: list[uuid.UUID] = Field(
        min_length=1, max_length=100, description="The questions prepared ahead, in the order asked."
    )
    notes: Notes = ""


class StaffMember(Output):
    staff_id: str
    name: str
    department: str


class Participant(Output):
    name: str
    role: str | None


class Meeting(Output):
    id: uuid.UUID
    customer_id: str
    customer_kind: CustomerKind
    held_at: datetime
    attendees: list[StaffMember]
    customer_participants: list[Participant]
    question_ids: list[uuid.UUID]
    notes: str
    created_at: datetime


# Expectations


class ExpectationCreate(Input):
    """An expectation as heard: the customer's words and our restatement."""

    statement: Words = Field(description="The customer's own words.")
    restatement: Words = Field(description="Our understanding, in our words, for the customer to confirm.")
    priority: Priority
    key_point: bool = Field(default=False, description="One of the points that matter most to the customer.")
    measure: Sentence | None = Field(
        default=None, description="A measurable target, such as 'delivery within 2 working days'."
    )
    capability: Capability = Field(description="Whether we can meet it: `can_meet`, `partial` or `cannot_meet`.")
    question_id: uuid.UUID | None = Field(
        default=None, description="The prepared question (one of the meeting's) that drew it out."
    )


class ConfirmationCreate(Input):
    confirmed_by: ShortText = Field(description="Who at the customer confirmed our restatement.")
    note: OptionalText | None = None
    version: int | None = Field(
        default=None, ge=1, description="The version the customer confirmed; a 409 if it has since been revised."
    )


class Confirmation(Output):
    confirmed_by: str
    note: str | None
    confirmed_at: datetime


class ExpectationVersion(Output):
    """An earlier version, as it was when a revision replaced it."""

    version: int
    status: ExpectationStatus
    statement: str
    restatement: str
    priority: Priority
    key_point: bool
    measure: str | None
    capability: Capability
    themes: list[str] = Field(description="The taxonomy's themes this version's statement and restatement mention.")
    question_id: uuid.UUID | None
    confirmation: Confirmation | None
    recorded_at: datetime
    superseded_at: datetime


class Expectation(Output):
    id: uuid.UUID
    meeting_id: uuid.UUID
    customer_id: str
    customer_kind: CustomerKind
    status: ExpectationStatus
    version: int
    statement: str
    restatement: str
    priority: Priority
    key_point: bool
    measure: str | None
    capability: Capability
    themes: list[str] = Field(
        description=(
            "Keys of the platform's themes (the taxonomy feedback is tagged with) that the statement or the "
            "restatement mention, in taxonomy order; found again at each revision."
        )
    )
    question_id: uuid.UUID | None
    confirmation: Confirmation | None = Field(description="Who confirmed this version, and when; null until then.")
    history: list[ExpectationVersion] = Field(description="Earlier versions, oldest first.")
    recorded_at: datetime = Field(description="When this version was recorded.")
    created_at: datetime
    updated_at: datetime


class CustomerExpectations(Output):
    """What one customer expects: the current version of each, key points first."""

    customer_id: str
    expectations: list[Expectation] = Field(
        description="Key points first, then by priority (high to low), then oldest first."
    )
    unconfirmed_ids: list[uuid.UUID] = Field(description="Expectations whose current version awaits confirmation.")
    cannot_meet_ids: list[uuid.UUID] = Field(description="Expectations we cannot meet.")
    partial_ids: list[uuid.UUID] = Field(description="Expectations we can meet only partly.")


# The demand backlog


class GapExample(Output):
    expectation_id: uuid.UUID
    customer_id: str
    statement: str = Field(description="The customer's own words.")


class GapTheme(Output):
    """The capability gaps under one theme."""

    theme: str = Field(description="A theme key of the taxonomy, or `unthemed` for gaps that mention no theme.")
    label: str = Field(description="The theme's label in the taxonomy (`Unthemed`; the key if no longer in it).")
    customers: int = Field(description="Distinct customers with a gap under this theme.")
    expectations: int = Field(description="Gaps (current versions of expectations) under this theme.")
    examples: list[GapExample] = Field(
        description="A few gaps in the customers' own words, one per customer, most recently recorded first."
    )


class GapBacklog(Output):
    """Capability gaps grouped by theme: what blocks the most customers first."""

    themes: list[GapTheme] = Field(
        description="Most distinct customers first, then most gaps, then by key; a gap with several themes counts "
        "under each."
    )
