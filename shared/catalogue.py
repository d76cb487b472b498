"""The event catalogue: every event type and its topic, the platform's published language.

Topic, key and type come from here, never from literals in the services.
A payload is the publishing service's REST representation: `build_asyncapi`
is handed each spec's model (the notifications service maps them), so
this module imports no service.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EventSpec:
    type: str
    service: str
    description: str

    @property
    def topic(self) -> str:
        """The topic before `CF_TOPIC_PREFIX`."""
        return f"{self.service}.events"

    @property
    def source(self) -> str:
        return f"/customer-focus/{self.service}"


FEEDBACK_RECEIVED = EventSpec("feedback.received", "feedback", "Feedback was captured.")
FEEDBACK_STATUS_CHANGED = EventSpec(
    "feedback.status_changed",
    "feedback",
    "Feedback moved along its lifecycle; `previous_status` says from where.",
)
FEEDBACK_VERDICT_GIVEN = EventSpec(
    "feedback.verdict_given",
    "feedback",
    "The customer (or staff for them) accepted or rejected a resolution; `verdict` says which.",
)
FEEDBACK_THEME_SPIKING = EventSpec(
    "feedback.theme_spiking",
    "feedback",
    "A theme's complaints in the trailing window reached the spike rule (contract §3); the data is the spike, "
    "which concerns no customer, so its key and `customerid` are the theme.",
)
MEETING_RECORDED = EventSpec("meeting.recorded", "expectations", "A customer meeting was recorded.")
EXPECTATION_RECORDED = EventSpec(
    "expectation.recorded",
    "expectations",
    "An expectation, or a new version of it, was recorded.",
)
EXPECTATION_CONFIRMED = EventSpec(
    "expectation.confirmed",
    "expectations",
    "The customer confirmed our restatement of an expectation.",
)
EXPECTATION_GAP_IDENTIFIED = EventSpec(
    "expectation.gap_identified",
    "expectations",
    "We can meet an expectation only partly or not at all.",
)
QUESTION_CREATED = EventSpec(
    "question.created",
    "expectations",
    "A question was added to the bank; it concerns no customer, so its key and `customerid` are its id.",
)
COMMITMENT_CREATED = EventSpec("commitment.created", "commitments", "A promise was made.")
COMMITMENT_RESCHEDULED = EventSpec(
    "commitment.rescheduled",
    "commitments",
    "A promise got a new due date, with a reason; `previous_due_at` says the old one.",
)
COMMITMENT_DUE_SOON = EventSpec(
    "commitment.due_soon",
    "commitments",
    "An open promise reached its due-soon moment (`due_at` minus the lead time).",
)
COMMITMENT_OVERDUE = EventSpec(
    "commitment.overdue",
    "commitments",
    "An open promise passed its due date.",
)
COMMITMENT_MET = EventSpec(
    "commitment.met",
    "commitments",
    "A promise was kept; `status` says on time or late.",
)
COMMITMENT_CANCELLED = EventSpec("commitment.cancelled", "commitments", "A promise was cancelled.")
CUSTOMER_UPDATED = EventSpec(
    "customer.updated",
    "customers",
    "A customer's profile was created or changed (contract §8).",
)
CUSTOMER_SURVEY_DUE = EventSpec(
    "customer.survey_due",
    "customers",
    "A customer is due for a survey (contract §8): its survey interval passed since its last response or survey.",
)
CUSTOMER_HEALTH_CHANGED = EventSpec(
    "customer.health_changed",
    "customers",
    "A customer's health band changed (contract §8); `previous_band` says from which.",
)
SUBSCRIPTION_DISABLED = EventSpec(
    "subscription.disabled",
    "notifications",
    "A webhook subscription was disabled (its endpoint answered 410 or exhausted the retry schedule).",
)

CATALOGUE: dict[str, EventSpec] = {
    spec.type: spec
    for spec in (
        FEEDBACK_RECEIVED,
        FEEDBACK_STATUS_CHANGED,
        FEEDBACK_VERDICT_GIVEN,
        FEEDBACK_THEME_SPIKING,
        MEETING_RECORDED,
        EXPECTATION_RECORDED,
        EXPECTATION_CONFIRMED,
        EXPECTATION_GAP_IDENTIFIED,
        QUESTION_CREATED,
        COMMITMENT_CREATED,
        COMMITMENT_RESCHEDULED,
        COMMITMENT_DUE_SOON,
        COMMITMENT_OVERDUE,
        COMMITMENT_MET,
        COMMITMENT_CANCELLED,
        CUSTOMER_UPDATED,
        CUSTOMER_HEALTH_CHANGED,
        CUSTOMER_SURVEY_DUE,
        SUBSCRIPTION_DISABLED,
    )
}

# The event types that concern no single customer: keyed by their own subject (contract §2), in no timeline.
ABOUT_NO_CUSTOMER = frozenset({QUESTION_CREATED.type, FEEDBACK_THEME_SPIKING.type})

# The three source topics: what the customers service reads into timelines, and what notifications routes.
ROUTED_SOURCE_TOPICS = ("feedback.events", "expectations.events", "commitments.events")
OPERATIONS_TOPIC = "notifications.events"
# The customers service's own events (a health turning red goes to departments too).
CUSTOMERS_TOPIC = CUSTOMER_UPDATED.topic
# The topics the notifications service consumes and routes to departments.
ROUTED_TOPICS = (*ROUTED_SOURCE_TOPICS, CUSTOMERS_TOPIC)


def department_topic(department: str) -> str:
    """The topic a department's notifications go to, before the prefix."""
    return f"notifications.{department}"


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def all_topics(departments: list[str]) -> list[str]:
    """Every topic of the contract (before the prefix), dead-letter topics included."""
    topics = [*ROUTED_SOURCE_TOPICS, CUSTOMERS_TOPIC, OPERATIONS_TOPIC, *(department_topic(d) for d in departments)]
    return topics + [dead_letter_topic(t) for t in ROUTED_TOPICS]
