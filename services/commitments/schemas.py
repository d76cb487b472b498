"""What the commitments API accepts and returns; the events carry the same models."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shared.types import Instant, SafeStr, storable

CustomerKind = Literal["external", "internal"]
SourceType = Literal["feedback", "expectation", "meeting", "manual"]
Status = Literal["open", "due_soon", "overdue", "met_on_time", "met_late", "cancelled"]
# `promise` is any promise a person makes; the others are made by a response policy for a feedback.
Kind = Literal["promise", "acknowledge", "resolve", "follow_up"]
BrokenBecause = Literal[
    "overdue", "met_late", "rescheduled_without_agreement", "cancelled_without_agreement", "cancelled_after_due"
]


# The feedback a response policy can match (contract §3).
FeedbackKind = Literal["complaint", "compliment", "suggestion", "question", "survey_response"]
FeedbackChannel = Literal[
    "web", "email", "phone", "chat", "survey", "focus_group", "meeting", "social", "in_person", "other"
]
PolicyName = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
# Ten years: far enough for any promise, near enough that `created_at` plus it stays a date.
Within = Annotated[int, Field(gt=0, le=315_360_000)]


# Constraints before `storable`: after it, pydantic checks min_length before stripping.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128), AfterValidator(storable)]
Reason = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000), AfterValidator(storable)
]
Note = Annotated[str, StringConstraints(max_length=10_000), AfterValidator(storable)]


class CommitmentSource(BaseModel):
    """What the promise answers: a feedback item, an expectation, a meeting, or nothing (manual)."""

    model_config = ConfigDict(frozen=True)

    type: SourceType
    id: Name | None = None

    @model_validator(mode="after")
    def _id_unless_manual(self) -> Self:
        if self.type != "manual" and self.id is None:
            raise ValueError(f"a {self.type} source needs the id of that {self.type}")
        return self


class NewCommitment(BaseModel):
    customer_id: Name
    customer_kind: CustomerKind = "external"
    title: Annotated[
        str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), AfterValidator(storable)
    ]
    description: Note | None = None
    owner_id: Name
    department: SafeStr = Field(description="One of the configured departments (`CF_DEPARTMENTS`).")
    due_at: Instant = Field(description="When the promise is due; must be in the future.")
    source: CommitmentSource = CommitmentSource(type="manual")
    kind: Kind = "promise"


class Rescheduling(BaseModel):
    due_at: Instant = Field(description="The new due date; must be in the future.")
    reason: Reason = Field(description="Why the date moved; required.")
    customer_agreed: bool = Field(
        default=False, description="The customer agreed to the new date; without it the promise is broken."
    )


class Completion(BaseModel):
    note: Note | None = None


class Cancellation(BaseModel):
    reason: Reason | None = None
    customer_agreed: bool = Field(
        default=False,
        description="The customer agreed to drop the promise; before the due date it is then neither kept nor broken.",
    )


class EarlierDueDate(BaseModel):
    """A due date the promise had before a reschedule."""

    model_config = ConfigDict(frozen=True)

    due_at: Instant
    reason: str
    rescheduled_at: Instant
    customer_agreed: bool = False


class Commitment(BaseModel):
    """A promise to a customer as the API returns it (and the commitment events carry it)."""

    model_config = ConfigDict(frozen=True, from_attributes=True)

    id: uuid.UUID
    customer_id: str
    customer_kind: CustomerKind
    title: str
    description: str | None
    owner_id: str
    department: str
    due_at: Instant
    due_soon_at: Instant = Field(description="`due_at` minus the due-soon lead time.")
    source: CommitmentSource
    status: Status
    renegotiations: int = Field(description="How many times the due date was moved.")
    history: list[EarlierDueDate] = Field(description="Every earlier due date, oldest first.")
    completed_at: Instant | None
    completion_note: str | None
    cancelled_at: Instant | None
    cancellation_reason: str | None
    kind: Kind = Field(description="`promise`, or the response promise a policy made: acknowledge, resolve, follow_up.")
    kept: bool | None = Field(
        description="Null while open (or cancelled with agreement before the due date), then kept or not."
    )
    broken_because: BrokenBecause | None = Field(description="Why the promise was broken; it stays broken.")
    excuses: int = Field(description="Reschedules and cancellations made after the due date or without agreement.")
    created_at: Instant
    updated_at: Instant


class CommitmentRescheduled(Commitment):
    """The payload of `commitment.rescheduled`: the commitment and its previous due date."""

    previous_due_at: Instant


class Accountability(BaseModel):
    """How a group of promises due in the window fared; see the service README for definitions."""

    model_config = ConfigDict(frozen=True)

    due: int
    met_on_time: int
    met_late: int
    overdue: int
    open: int
    cancelled: int
    on_time_rate: float | None
    mean_lateness_hours: float | None
    renegotiations: int
    kept: int
    broken: int
    kept_rate: float | None = Field(description="kept ÷ (kept + broken); null when none is decided.")
    excuses: int


class DepartmentAccountability(Accountability):
    department: str


class OwnerAccountability(Accountability):
    owner_id: str


class KindAccountability(Accountability):
    kind: Kind


class CommitmentMetrics(BaseModel):
    model_config = ConfigDict(frozen=True)

    since: Instant | None
    until: Instant | None
    as_of: Instant = Field(description="The moment `overdue` and `open` were judged at.")
    total: Accountability
    departments: list[DepartmentAccountability]
    owners: list[OwnerAccountability]
    kinds: list[KindAccountability]


class PolicyMatch(BaseModel):
    """Which `feedback.received` a policy answers: every given field must match; none given matches all."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: FeedbackKind | None = None
    channel: FeedbackChannel | None = None
    customer_kind: CustomerKind | None = None
    detractor: bool | None = Field(
        default=None, description="A detractor rating (nps ≤ 6, csat ≤ 2, ces ≥ 5), as notifications routes it."
    )


class ResponsePolicyIn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    match: PolicyMatch = PolicyMatch()
    department: SafeStr = Field(description="One of the configured departments; it owns the promises.")
    owner_id: Name | None = Field(default=None, description="Who owns the promises; the department's name if null.")
    acknowledge_within_seconds: Within | None = None
    resolve_within_seconds: Within | None = None
    follow_up_within_seconds: Within | None = None

    @model_validator(mode="after")
    def _promises_something(self) -> Self:
        if (self.acknowledge_within_seconds, self.resolve_within_seconds, self.follow_up_within_seconds) == (
            None,
            None,
            None,
        ):
            raise ValueError(
                "give at least one of acknowledge_within_seconds, resolve_within_seconds, follow_up_within_seconds"
            )
        return self


class ResponsePolicy(ResponsePolicyIn):
    """A response policy as the API returns it."""

    model_config = ConfigDict(frozen=True, extra="forbid", from_attributes=True)

    name: str
    created_at: Instant
    updated_at: Instant


class ResponsePolicies(BaseModel):
    items: list[ResponsePolicy]
