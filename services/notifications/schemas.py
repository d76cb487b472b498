"""REST representations of the notifications service (and the payload of its operational event)."""

from __future__ import annotations

import fnmatch
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    model_validator,
)

from shared.catalogue import CATALOGUE, ROUTED_TOPICS
from shared.schemas import CustomerKind
from shared.types import Instant, SafeStr

# The event types that reach departments: everything the source topics and customers.events carry.
ROUTED_EVENT_TYPES = tuple(sorted(spec.type for spec in CATALOGUE.values() if spec.topic in ROUTED_TOPICS))


def _pattern_matches_a_routed_type(pattern: str) -> str:
    if not any(fnmatch.fnmatchcase(event_type, pattern) for event_type in ROUTED_EVENT_TYPES):
        raise ValueError(f"matches no event type; known types are {', '.join(ROUTED_EVENT_TYPES)}")
    return pattern


EventTypePattern = Annotated[
    str,
    StringConstraints(min_length=1, max_length=100, pattern=r"^[a-z0-9_.*]+$"),
    AfterValidator(_pattern_matches_a_routed_type),
    Field(
        description="An event type, or a pattern where `*` stands for any characters (`commitment.*`, `*`).",
        examples=["commitment.*"],
    ),
]
FieldPath = Annotated[
    str,
    StringConstraints(max_length=200, pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"),
    Field(description="A dotted path into the event's `data`, such as `rating.value`.", examples=["rating.value"]),
]
Department = Annotated[
    str, StringConstraints(min_length=1, max_length=64), Field(description="One of the configured departments.")
]
Scalar = SafeStr | int | float | bool | None
Operator = Literal["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "exists"]


class _Strict(BaseModel):
    # from_attributes: an output model is validated straight from its row (`Subscription.model_validate(row)`).
    model_config = ConfigDict(extra="forbid", frozen=True, from_attributes=True)


class FieldTest(_Strict):
    """Compares one field of the event's data with a value (`exists` checks presence)."""

    field: FieldPath
    op: Operator = "eq"
    value: Scalar | list[Scalar] = None

    @model_validator(mode="after")
    def _value_fits_operator(self) -> Self:
        if self.op in ("in", "not_in") and not isinstance(self.value, list):
            raise ValueError(f"`{self.op}` needs a list `value`")
        if self.op not in ("in", "not_in") and isinstance(self.value, list):
            raise ValueError(f"`{self.op}` needs a single `value`, not a list")
        if self.op == "exists" and not isinstance(self.value, bool):
            raise ValueError("`exists` needs `value` true or false")
        return self


class AllOf(_Strict):
    """True when every condition holds."""

    all: list[Condition] = Field(min_length=1, max_length=50)


class AnyOf(_Strict):
    """True when at least one condition holds."""

    any: list[Condition] = Field(min_length=1, max_length=50)


class NoneOf(_Strict):
    """True when the condition does not hold."""

    not_: Condition = Field(alias="not")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


def _condition_kind(value: Any) -> str | None:
    keys = value.keys() if isinstance(value, dict) else _MODEL_KEYS.get(type(value), ())
    for kind in ("all", "any", "not", "field"):
        if kind in keys:
            return kind
    return None


Condition = Annotated[
    Annotated[FieldTest, Tag("field")]
    | Annotated[AllOf, Tag("all")]
    | Annotated[AnyOf, Tag("any")]
    | Annotated[NoneOf, Tag("not")],
    Discriminator(
        _condition_kind,
        custom_error_type="condition",
        custom_error_message="a condition is an object with one of `field`, `all`, `any` or `not`",
    ),
]
_MODEL_KEYS: dict[type, tuple[str, ...]] = {FieldTest: ("field",), AllOf: ("all",), AnyOf: ("any",), NoneOf: ("not",)}
AllOf.model_rebuild()
AnyOf.model_rebuild()
NoneOf.model_rebuild()


class RoutingRuleIn(_Strict):
    """Which events (types and a condition on their data) go to which departments."""

    name: SafeStr = Field(min_length=1, max_length=200)
    event_types: list[EventTypePattern] = Field(min_length=1, max_length=50)
    condition: Condition | None = Field(default=None, description="Omit to match every event of the types.")
    departments: list[Department] = Field(default_factory=list, max_length=50)
    department_from: FieldPath | None = Field(
        default=None,
        description="A field of the event's data naming one more department, such as a commitment's `department`.",
    )
    enabled: bool = True

    @model_validator(mode="after")
    def _names_a_department(self) -> Self:
        if not self.departments and self.department_from is None:
            raise ValueError("give `departments`, `department_from`, or both")
        return self


class RoutingRule(RoutingRuleIn):
    id: uuid.UUID
    created_at: datetime
    updated_at: datetime


class Notification(_Strict):
    """An event as it reached one department's inbox."""

    id: uuid.UUID
    department: str
    event_id: uuid.UUID
    event_type: str
    subject: str | None
    customer_id: str
    customer_kind: CustomerKind | None = Field(
        description="The event data's `customer_kind`; null for an event that names none (such as a question's)."
    )
    occurred_at: datetime | None
    created_at: datetime
    read_at: datetime | None
    event: dict[str, Any] = Field(description="The CloudEvent, with the `department` extension.")


SubscriptionStatus = Literal["active", "disabled"]
DisabledReason = Literal["gone", "retries_exhausted"]
DeliveryStatus = Literal["pending", "delivered", "failed"]


class SubscriptionIn(_Strict):
    department: Department
    url: AnyHttpUrl = Field(description="An http(s) URL; private and loopback addresses are refused by default.")
    event_types: list[EventTypePattern] = Field(
        default_factory=list, max_length=50, description="Patterns such as `commitment.*`; empty means every event."
    )


class Subscription(_Strict):
    """A webhook endpoint of a department (never shows its secret)."""

    id: uuid.UUID
    department: str
    url: str
    event_types: list[str]
    status: SubscriptionStatus
    disabled_reason: DisabledReason | None
    disabled_at: datetime | None
    created_at: datetime
    updated_at: datetime


SecretNote = Literal["secret_shown_once"]


class SubscriptionCreated(Subscription):
    secret: str | None = Field(
        description=(
            "The signing secret (`whsec_…`), shown only in the response that created the subscription; "
            "`null` when the response is an idempotent replay (`note` says so)."
        )
    )
    note: SecretNote | None = Field(
        default=None,
        description=(
            "`secret_shown_once` in an idempotent replay: the secret was in the first response only and is "
            "never stored with it; delete and re-create the subscription for a new one."
        ),
    )

    def for_replay(self) -> SubscriptionCreated:
        """What an `Idempotency-Key` replay answers (and all that is stored for it): no secret."""
        return self.model_copy(update={"secret": None, "note": "secret_shown_once"})


class RecoverIn(_Strict):
    since: Instant = Field(description="Send again what was routed to the department from this moment on.")


class Recovery(_Strict):
    """What a recover queued."""

    subscription_id: uuid.UUID
    since: datetime
    queued: int = Field(
        description=(
            "Notifications queued for delivery: each matching one routed since then that the subscription has "
            "not received and is not already waiting for."
        )
    )


class DeliveryAttempt(_Strict):
    attempted_at: datetime
    status_code: int | None
    duration_ms: float
    error: str | None


class Delivery(_Strict):
    """One event owed to one subscription, with every attempt made."""

    id: uuid.UUID
    subscription_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    status: DeliveryStatus
    attempt_count: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    attempts: list[DeliveryAttempt]
