"""What an event of feedback, expectations or commitments means for its customer.

Each event about a customer becomes one timeline entry (a one-line summary and
its lineage links), may change the latest state of the feedback, promise or
expectation it is about (what the counts are made of), and may be a contact or
a survey response. Pure functions of the CloudEvent; `CustomerEvents.handle` is
the consumer's batch handler that writes them (services/customers/app.py).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.customers import repository, service
from services.customers.config import Settings
from shared import catalogue
from shared.consumer import ConsumedEvent
from shared.types import in_utc, storable

# The event types about one customer (those about none, such as a question added to the bank, have no timeline).
CUSTOMER_EVENT_TYPES = (
    frozenset(spec.type for spec in catalogue.CATALOGUE.values() if spec.topic in catalogue.ROUTED_SOURCE_TOPICS)
    - catalogue.ABOUT_NO_CUSTOMER
)
SUMMARY_MAX = 200
QUOTE_MAX = 80
OPEN_PROMISE = ("open", "due_soon", "overdue")
CLOSED_FEEDBACK = ("resolved", "closed")


@dataclass(frozen=True)
class Entry:
    customer_id: str
    customer_kind: str
    event_id: str
    type: str
    time: datetime
    subject: str
    summary: str
    links: list[dict[str, str]]


@dataclass(frozen=True)
class ItemState:
    item_type: str
    item_id: str
    customer_id: str
    open_complaint: bool = False
    open_promise: bool = False
    broken_promise: bool = False
    unconfirmed_expectation: bool = False
    capability_gap: bool = False
    updated_at: datetime | None = None
    detail: dict[str, Any] | None = None


@dataclass(frozen=True)
class AddedQuestion:
    id: uuid.UUID
    text: str
    topic: str
    topic_key: str
    open_ended: bool
    created_at: datetime


def customer_of(event: ConsumedEvent) -> str | None:
    """The event's customer, if it is about one this service can keep (1-128 storable characters)."""
    if event.type not in CUSTOMER_EVENT_TYPES:
        return None
    customer_id = event.envelope.get("customerid")
    if not isinstance(customer_id, str) or not 1 <= len(customer_id) <= 128:
        return None
    try:
        return storable(customer_id)
    except ValueError:
        return None


def entry_of(event: ConsumedEvent, customer_id: str) -> Entry:
    data = event.data
    kind = data.get("customer_kind")
    return Entry(
        customer_id=customer_id,
        customer_kind=kind if kind in ("external", "internal") else "external",
        event_id=_clean(event.id),
        type=event.type,
        time=_instant(event.envelope.get("time")) or datetime.now(UTC),
        subject=_clean(str(event.envelope.get("subject") or data.get("id") or "")),
        summary=_one_line(summary_of(event.type, data)),
        links=links_of(event.type, data),
    )


def summary_of(event_type: str, data: dict[str, Any]) -> str:
    """One line saying what happened, in words, from the event's data."""
    kind = _words(data.get("kind"))
    if event_type == catalogue.FEEDBACK_RECEIVED.type:
        rating = data.get("rating")
        scored = f" ({str(rating.get('scale', '')).upper()} {rating.get('value')})" if isinstance(rating, dict) else ""
        said = f": {_quote(data.get('text'))}" if data.get("text") else ""
        channel = _words(data.get("channel")) or "an unknown channel"
        return f"{kind.capitalize() or 'Feedback'} by {channel}{scored}{said}"
    if event_type == catalogue.FEEDBACK_STATUS_CHANGED.type:
        moved = f"from {_words(data.get('previous_status'))} to {_words(data.get('status'))}"
        return f"{kind.capitalize() or 'Feedback'} moved {moved}"
    if event_type == catalogue.FEEDBACK_VERDICT_GIVEN.type:
        verdict = data.get("verdict")
        answer = "accepted" if isinstance(verdict, dict) and verdict.get("accepted") else "rejected"
        return f"The customer {answer} the resolution of a {kind or 'feedback'}"
    if event_type == catalogue.MEETING_RECORDED.type:
        staff = [str(a.get("name")) for a in data.get("attendees") or () if isinstance(a, dict)]
        people = [str(p.get("name")) for p in data.get("customer_participants") or () if isinstance(p, dict)]
        return f"Meeting with {', '.join(people) or 'the customer'}, held by {', '.join(staff) or 'staff'}"
    if event_type == catalogue.EXPECTATION_RECORDED.type:
        heard = f"version {data.get('version')}, {_words(data.get('priority'))} priority"
        return f"Expectation heard ({heard}): {_quote(data.get('statement'))}"
    if event_type == catalogue.EXPECTATION_CONFIRMED.type:
        return f"The customer confirmed our restatement: {_quote(data.get('restatement'))}"
    if event_type == catalogue.EXPECTATION_GAP_IDENTIFIED.type:
        return f"Capability gap ({_words(data.get('capability'))}): {_quote(data.get('statement'))}"
    title = _quote(data.get("title"))
    due = _day(data.get("due_at"))
    if event_type == catalogue.COMMITMENT_CREATED.type:
        return f"Promise made: {title}, by {data.get('department')}, due {due}"
    if event_type == catalogue.COMMITMENT_RESCHEDULED.type:
        return f"Promise rescheduled: {title}, due {_day(data.get('previous_due_at'))} → {due}"
    if event_type == catalogue.COMMITMENT_DUE_SOON.type:
        return f"Promise due soon: {title}, due {due}"
    if event_type == catalogue.COMMITMENT_OVERDUE.type:
        return f"Promise overdue: {title}, was due {due}"
    if event_type == catalogue.COMMITMENT_MET.type:
        late = "late" if data.get("status") == "met_late" else "on time"
        return f"Promise met {late}: {title}"
    if event_type == catalogue.COMMITMENT_CANCELLED.type:
        return f"Promise cancelled: {title}"
    return event_type


def links_of(event_type: str, data: dict[str, Any]) -> list[dict[str, str]]:
    """The lineage: a commitment's source, an expectation's meeting (and prepared question)."""
    links = []
    if event_type.startswith("commitment."):
        source = data.get("source")
        if isinstance(source, dict) and source.get("id"):
            links.append({"rel": "source", "type": _clean(str(source.get("type"))), "id": _clean(str(source["id"]))})
    elif event_type.startswith("expectation."):
        if data.get("meeting_id"):
            links.append({"rel": "meeting", "type": "meeting", "id": _clean(str(data["meeting_id"]))})
        if data.get("question_id"):
            links.append({"rel": "question", "type": "question", "id": _clean(str(data["question_id"]))})
    return links


def item_of(event: ConsumedEvent, customer_id: str) -> ItemState | None:
    """The latest state of the feedback, promise or expectation the event is about, as far as it is counted."""
    data, event_type = event.data, event.type
    item_id = data.get("id")
    if not isinstance(item_id, str) or not item_id:
        return None
    item_id = _clean(item_id)
    at = _instant(data.get("updated_at")) or _instant(event.envelope.get("time")) or datetime.now(UTC)
    if event_type.startswith("feedback."):
        is_open = data.get("kind") == "complaint" and data.get("status") not in CLOSED_FEEDBACK
        detail = _detail(data, "kind", "status", "themes", "rating", "occurred_at")
        return ItemState("feedback", item_id, customer_id, open_complaint=is_open, updated_at=at, detail=detail)
    if event_type.startswith("commitment."):
        status, kept = data.get("status"), data.get("kept")
        # Promises judged before `kept` existed: overdue or met late counts as broken.
        broken = kept is False if "kept" in data else status in ("overdue", "met_late")
        return ItemState(
            "commitment",
            item_id,
            customer_id,
            open_promise=status in OPEN_PROMISE,
            broken_promise=broken,
            updated_at=at,
            detail=_detail(data, "title", "department", "due_at", "status", "kept", "broken_because"),
        )
    if event_type.startswith("expectation."):
        return ItemState(
            "expectation",
            item_id,
            customer_id,
            unconfirmed_expectation=data.get("status") == "recorded",
            capability_gap=data.get("capability") in ("partial", "cannot_meet"),
            updated_at=at,
            detail=_detail(data, "statement", "restatement", "priority", "capability", "meeting_id", "version"),
        )
    return None


def question_of(event: ConsumedEvent) -> AddedQuestion | None:
    """The question a `question.created` added to the bank, if its data is one."""
    data = event.data
    text, topic = data.get("text"), data.get("topic")
    if not isinstance(text, str) or not isinstance(topic, str) or not isinstance(data.get("open_ended"), bool):
        return None
    try:
        question_id = uuid.UUID(str(data.get("id")))
    except ValueError:
        return None
    return AddedQuestion(
        id=question_id,
        text=_clean(text),
        topic=_clean(topic),
        topic_key=theme_key(topic),
        open_ended=data["open_ended"],
        created_at=_instant(data.get("created_at")) or datetime.now(UTC),
    )


def theme_key(topic: str) -> str:
    """A topic as a theme key: "Support responsiveness" → "support_responsiveness"."""
    return "_".join(re.findall(r"[a-z0-9]+", topic.lower()))


def contact_at(event: ConsumedEvent) -> datetime | None:
    """When the customer was in touch, if the event is a contact: feedback received, a meeting held."""
    if event.type == catalogue.FEEDBACK_RECEIVED.type:
        return _instant(event.data.get("occurred_at"))
    if event.type == catalogue.MEETING_RECORDED.type:
        return _instant(event.data.get("held_at"))
    return None


def rating_of(event: ConsumedEvent) -> tuple[str, int, datetime] | None:
    """The scale, value and moment of a rating the customer gave (feedback received with an NPS, CSAT or CES)."""
    rating = event.data.get("rating")
    if event.type != catalogue.FEEDBACK_RECEIVED.type or not isinstance(rating, dict):
        return None
    scale, value, at = rating.get("scale"), rating.get("value"), _instant(event.data.get("occurred_at"))
    if scale not in repository.SCALES or not isinstance(value, int) or isinstance(value, bool) or at is None:
        return None
    return scale, value, at


def survey_at(event: ConsumedEvent) -> datetime | None:
    """When the customer answered a survey: feedback of kind `survey_response`, or any rated feedback."""
    data = event.data
    if event.type == catalogue.FEEDBACK_RECEIVED.type and (
        data.get("kind") == "survey_response" or isinstance(data.get("rating"), dict)
    ):
        return _instant(data.get("occurred_at"))
    return None


class CustomerEvents:
    """The batch handler of the customers consumer: timelines, customers and counted states in one statement,
    then the health of each customer of the batch judged again (one `customer.health_changed` per new band)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    async def handle(self, session: AsyncSession, events: list[ConsumedEvent]) -> None:
        entries: list[Entry] = []
        items: dict[tuple[str, str], ItemState] = {}
        contacts: dict[str, datetime] = {}
        surveys: dict[str, datetime] = {}
        scores: dict[str, dict[str, tuple[int, datetime]]] = {}
        questions: dict[uuid.UUID, AddedQuestion] = {}
        for event in events:
            if event.type == catalogue.QUESTION_CREATED.type:
                question = question_of(event)
                if question is not None:
                    questions[question.id] = question
                continue
            customer_id = customer_of(event)
            if customer_id is None:
                continue
            entries.append(entry_of(event, customer_id))
            item = item_of(event, customer_id)
            if item is not None:
                items[(item.item_type, item.item_id)] = item  # the batch's last event of an item wins
            for moments, at in ((contacts, contact_at(event)), (surveys, survey_at(event))):
                if at is not None:
                    moments[customer_id] = max(at, moments.get(customer_id, at))
            rating = rating_of(event)
            if rating is not None:
                scale, value, given_at = rating
                latest = scores.setdefault(scale, {})
                if customer_id not in latest or latest[customer_id][1] <= given_at:
                    latest[customer_id] = (value, given_at)
        if questions:
            await repository.add_questions(session, list(questions.values()))
        if not entries:
            return
        customer_ids = sorted({entry.customer_id for entry in entries})
        # The customers locked before anything else is written: two replicas consuming different topics judge
        # one customer one after the other.
        await repository.record_batch(
            session, entries, items=list(items.values()), contacts=contacts, surveys=surveys, scores=scores
        )
        await service.judge_health(session, customer_ids=customer_ids, settings=self._settings, now=datetime.now(UTC))


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return in_utc(datetime.fromisoformat(value))
    except ValueError:
        return None


def _day(value: Any) -> str:
    moment = _instant(value)
    return moment.strftime("%Y-%m-%d %H:%M UTC") if moment else "(no date)"


def _words(value: Any) -> str:
    return str(value).replace("_", " ") if value else ""


def _quote(value: Any) -> str:
    text = " ".join(str(value or "").split())
    return f"“{text[: QUOTE_MAX - 1]}…”" if len(text) > QUOTE_MAX else f"“{text}”"


def _clean(text: str) -> str:
    """Text PostgreSQL can store: no NUL, no lone surrogate."""
    return text.replace("\x00", "").encode("utf-8", "replace").decode("utf-8")


def _detail(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    """The fields the brief shows, as the event had them, in text PostgreSQL can store (moments in UTC ISO)."""
    detail = {key: _storable(data.get(key)) for key in keys}
    for key in keys:
        if key.endswith("_at"):
            moment = _instant(data.get(key))
            detail[key] = moment.isoformat() if moment else None
    return detail


def _storable(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_storable(item) for item in value]
    if isinstance(value, dict):
        return {_clean(str(key)): _storable(item) for key, item in value.items()}
    return value


def _one_line(text: str) -> str:
    line = _clean(" ".join(text.split()))
    return line if len(line) <= SUMMARY_MAX else line[: SUMMARY_MAX - 1] + "…"
