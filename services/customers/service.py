"""The rules of the customers service: profiles, the customer as the API shows it, timelines."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy.ext.asyncio import AsyncSession

from services.customers import health, repository, schemas
from services.customers.config import Settings
from services.customers.models import Customer as CustomerRow
from services.customers.models import CustomerItem as CustomerItemRow
from services.customers.survey import SCHEDULER_MAX_SLEEP, SURVEY_CHANNEL, SurveyCadence
from shared import catalogue
from shared.due_moments import FiredMoment, announce_moment
from shared.errors import NotFound, Unprocessable
from shared.events import build_event
from shared.outbox import add_event, add_records
from shared.pagination import Page, page_of
from shared.schemas import CustomerKind

NO_COUNTS = dict.fromkeys(repository.COUNT_NAMES, 0)


async def put_profile(
    session: AsyncSession,
    *,
    customer_id: str,
    profile: schemas.ProfileIn,
    departments: Sequence[str],
    cadence: SurveyCadence,
) -> tuple[schemas.Customer, bool]:
    """Create or replace the profile; `customer.updated` when it changed. The customer, and whether it is new."""
    _check_departments(profile, departments)
    values = _profile_values(profile)
    row = await repository.get_customer(session, customer_id, for_update=True)
    created = False
    if row is None:
        now = datetime.now(UTC)
        new = CustomerRow(customer_id=customer_id, first_seen_at=now, created_at=now, updated_at=now, **values)
        created = await repository.insert_customer(session, new)
        # Only a moment nearer than the schedulers' longest sleep needs to wake them.
        if created and cadence.interval <= SCHEDULER_MAX_SLEEP:
            await announce_moment(session, SURVEY_CHANNEL, now + cadence.interval)
        # Not added: the first event of this customer was consumed meanwhile; its profile is set below.
        row = await repository.get_customer(session, customer_id, for_update=True)
        if row is None:
            raise RuntimeError(f"customer {customer_id} neither added nor found")
    changed = row.profiled_at is None or any(getattr(row, key) != value for key, value in values.items())
    if changed:
        for key, value in values.items():
            setattr(row, key, value)
    if changed:
        row.profiled_at = row.updated_at = datetime.now(UTC)
    customer = await _customer(session, row, cadence)
    if changed:
        await add_event(
            session, catalogue.CUSTOMER_UPDATED, data=customer, subject=customer_id, customer_id=customer_id
        )
    return customer, created


async def get_customer(
    session: AsyncSession, *, customer_id: str, settings: Settings, cadence: SurveyCadence
) -> schemas.Customer:
    """The customer, its health judged now: silence grows without an event, so it is not the stored one."""
    row = await repository.get_customer(session, customer_id)
    if row is None:
        raise NotFound(f"No customer '{customer_id}' is known: no profile was given and no event named it.")
    customer = await _customer(session, row, cadence)
    now = datetime.now(UTC)
    counts = await repository.health_counts(session, [customer_id], broken_since=health.broken_since(settings, now))
    judged = health.judge(_factors(row, counts.get(customer_id)), settings, now)
    return customer.model_copy(update={"health": _health_of(judged)})


async def list_customers(
    session: AsyncSession,
    *,
    key_customer: bool | None,
    customer_kind: str | None,
    health_band: str | None = None,
    silent_for_days: int | None = None,
    survey_due: bool | None = None,
    cadence: SurveyCadence,
    cursor: str | None,
    limit: int,
) -> Page[schemas.Customer]:
    """Customers, newest first; `health_band` and `silent_for_days` filter by the stored health and last contact."""
    silent_before = None
    if silent_for_days is not None:
        silent_before = health.days_before(datetime.now(UTC), silent_for_days)
    rows = await repository.list_customers(
        session,
        key_customer=key_customer,
        customer_kind=customer_kind,
        health_band=health_band,
        silent_before=silent_before,
        survey_due=survey_due,
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    counts = await repository.counts_of(session, [row.customer_id for row in items]) if items else {}
    return Page(
        items=[_customer_of(row, counts.get(row.customer_id, NO_COUNTS), cadence) for row in items],
        next_cursor=next_cursor,
    )


async def timeline(
    session: AsyncSession, *, customer_id: str, event_type: str | None, cursor: str | None, limit: int
) -> bytes:
    """A page of the customer's timeline, as the JSON of `Page[TimelineEntry]`."""
    rows = await repository.timeline(
        session, customer_id=customer_id, event_type=event_type, cursor=cursor, limit=limit
    )
    # Entries exist only for a known customer: only an empty page needs to ask whether the customer does.
    if not rows and await repository.get_customer(session, customer_id) is None:
        raise NotFound(f"No customer '{customer_id}' is known: no profile was given and no event named it.")
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.time, r.id))
    return timeline_json(items, next_cursor)


def timeline_json(rows: Sequence[Any], next_cursor: str | None) -> bytes:
    """`Page[TimelineEntry]` as pydantic writes it, written straight from the rows: the busiest read of the
    service builds no model per entry, and the stored links go into the body as they are
    (tests/customers/test_timeline.py holds it to the schema's own serialization)."""
    items = [
        {
            "event_id": event_id,
            "type": event_type,
            "time": time,
            "subject": subject,
            "summary": summary,
            "links": orjson.Fragment(links),
        }
        for _, event_id, event_type, time, subject, summary, links in rows
    ]
    return orjson.dumps({"items": items, "next_cursor": next_cursor}, option=orjson.OPT_UTC_Z)


async def judge_health(
    session: AsyncSession, *, customer_ids: Sequence[str], settings: Settings, now: datetime
) -> None:
    """Judge these customers' health again and store it; `customer.health_changed` for each whose band moved.

    In the transaction of what changed a factor (the consumer's batch, or the silence sweep), the customers
    locked in order, so a change of band is seen, and published, exactly once."""
    if not customer_ids:
        return
    inputs = await repository.health_inputs(session, customer_ids, broken_since=health.broken_since(settings, now))
    changed: list[repository.JudgedHealth] = []
    previous_bands: dict[str, str] = {}
    for row in inputs:
        judged = health.judge(_factors_of(row), settings, now)
        reasons = [{"factor": r.factor, "effect": r.effect, "detail": r.detail} for r in judged.reasons]
        if (judged.score, judged.band, reasons) == (row.health_score, row.health_band, row.health_reasons):
            continue  # unchanged: no write (most customers of a batch)
        changed.append(repository.JudgedHealth(row.customer_id, judged.score, judged.band, reasons))
        if judged.band != row.health_band:
            previous_bands[row.customer_id] = row.health_band
    if not changed:
        return
    await repository.save_health(session, changed, at=now)
    if not previous_bands:
        return
    moved = await repository.customers_to_judge(session, sorted(previous_bands))
    item_counts = await repository.counts_of(session, sorted(previous_bands))
    cadence = SurveyCadence.of(settings)
    events = []
    for customer_row in moved:
        customer = _customer_of(customer_row, item_counts.get(customer_row.customer_id, NO_COUNTS), cadence)
        data = schemas.CustomerHealthChanged(
            **dict(customer), previous_band=schemas.HealthBand(previous_bands[customer_row.customer_id])
        )
        events.append(
            build_event(
                catalogue.CUSTOMER_HEALTH_CHANGED,
                data=data,
                subject=customer_row.customer_id,
                customer_id=customer_row.customer_id,
            )
        )
    await add_records(session, events)


def _factors_of(row: repository.HealthInputs) -> health.Factors:
    return health.Factors(
        nps=row.nps_score,
        csat=row.csat_score,
        ces=row.ces_score,
        open_complaints=row.open_complaints,
        broken_promises=row.broken_promises,
        unconfirmed_expectations=row.unconfirmed_expectations,
        capability_gaps=row.capability_gaps,
        silent_since=row.silent_since,
    )


def _factors(row: CustomerRow, counts: tuple[int, int, int, int] | None) -> health.Factors:
    complaints, broken, unconfirmed, gaps = counts or (0, 0, 0, 0)
    return health.Factors(
        nps=row.nps_score,
        csat=row.csat_score,
        ces=row.ces_score,
        open_complaints=complaints,
        broken_promises=broken,
        unconfirmed_expectations=unconfirmed,
        capability_gaps=gaps,
        silent_since=row.last_contact_at or row.first_seen_at,
    )


def _health_of(judged: health.Health) -> schemas.Health:
    return schemas.Health(
        score=judged.score,
        band=schemas.HealthBand(judged.band),
        reasons=[schemas.HealthReason(factor=r.factor, effect=r.effect, detail=r.detail) for r in judged.reasons],
    )


def _check_departments(profile: schemas.ProfileIn, departments: Sequence[str]) -> None:
    """Each department named is a configured one; a supplying department only for an internal customer."""
    errors: list[dict[str, Any]] = []
    known = ", ".join(departments)
    if profile.supplying_department is not None:
        if profile.customer_kind != CustomerKind.INTERNAL:
            errors.append(
                {"loc": ["body", "supplying_department"], "msg": "only an internal customer has a supplying department"}
            )
        elif profile.supplying_department not in departments:
            errors.append(
                {
                    "loc": ["body", "supplying_department"],
                    "msg": f"unknown department '{profile.supplying_department}'; known: {known}",
                }
            )
    for index, contact in enumerate(profile.contacts):
        if contact.department not in departments:
            errors.append(
                {
                    "loc": ["body", "contacts", index, "department"],
                    "msg": f"unknown department '{contact.department}'; known: {known}",
                }
            )
    if errors:
        detail = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors)
        raise Unprocessable(detail, slug="validation-error", errors=errors)


def _profile_values(profile: schemas.ProfileIn) -> dict[str, Any]:
    value = profile.lifetime_value
    return {
        "name": profile.name,
        "customer_kind": profile.customer_kind.value,
        "key_customer": profile.key_customer,
        "segment": profile.segment,
        "lifetime_value_amount": value.amount if value else None,
        "lifetime_value_currency": value.currency if value else None,
        "supplying_department": profile.supplying_department,
        "contacts": [contact.model_dump(mode="json") for contact in profile.contacts],
        "awareness": profile.awareness.model_dump(mode="json"),
    }


async def _customer(session: AsyncSession, row: CustomerRow, cadence: SurveyCadence) -> schemas.Customer:
    counts = await repository.counts_of(session, [row.customer_id])
    return _customer_of(row, counts.get(row.customer_id, NO_COUNTS), cadence)


def _customer_of(row: CustomerRow, counts: dict[str, int], cadence: SurveyCadence) -> schemas.Customer:
    amount, currency = row.lifetime_value_amount, row.lifetime_value_currency
    return schemas.Customer(
        customer_id=row.customer_id,
        name=row.name,
        customer_kind=CustomerKind(row.customer_kind),
        key_customer=row.key_customer,
        segment=row.segment,
        lifetime_value=(
            schemas.LifetimeValue(amount=amount, currency=currency) if amount is not None and currency else None
        ),
        supplying_department=row.supplying_department,
        contacts=[schemas.Contact.model_validate(contact) for contact in row.contacts or ()],
        awareness=schemas.Awareness.model_validate(row.awareness or {}),
        profiled=row.profiled_at is not None,
        health=schemas.Health(
            score=row.health_score,
            band=schemas.HealthBand(row.health_band),
            reasons=[schemas.HealthReason.model_validate(reason) for reason in row.health_reasons or ()],
        ),
        last_contact_at=row.last_contact_at,
        last_survey_at=row.last_survey_at,
        next_survey_due_at=cadence.next_due_at(row),
        survey_due=row.survey_due,
        counts=schemas.Counts(**counts),
        first_seen_at=row.first_seen_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


# The meeting brief

BRIEF_LIST_LIMIT = 20
RECENT_COMPLAINTS = timedelta(days=90)
SUGGESTED_QUESTIONS = 10
AWARENESS_QUESTIONS = ("knows_we_exist", "knows_our_capabilities", "knows_who_to_contact")
# The theme an awareness gap adds: questions of the bank on the topic "awareness" are suggested for it.
AWARENESS_THEME = "awareness"


async def brief(session: AsyncSession, *, customer_id: str) -> schemas.Brief:
    """What two staff members need before they meet the customer (README: "The meeting brief")."""
    row = await repository.get_customer(session, customer_id)
    if row is None:
        raise NotFound(f"No customer '{customer_id}' is known: no profile was given and no event named it.")
    items = await repository.brief_items(session, customer_id, limit=BRIEF_LIST_LIMIT)
    themes = await repository.complaint_themes(session, customer_id, since=datetime.now(UTC) - RECENT_COMPLAINTS)
    scores = await repository.latest_scores(session, customer_id)
    awareness = row.awareness or {}
    gaps = [
        schemas.AwarenessGap(question=question, answer=awareness.get(question))
        for question in AWARENESS_QUESTIONS
        if awareness.get(question) is not True
    ]
    theme_names = [theme for theme, _, _ in themes] + ([AWARENESS_THEME] if gaps else [])
    return schemas.Brief(
        customer_id=customer_id,
        name=row.name,
        unconfirmed_expectations=[_expectation(i) for i in _newest(items, "unconfirmed_expectation")],
        capability_gaps=[_expectation(i) for i in _newest(items, "capability_gap")],
        open_promises=[_promise(i) for i in _newest(items, "open_promise")],
        broken_promises=[_promise(i) for i in _newest(items, "broken_promise")],
        complaint_themes=[
            schemas.ComplaintTheme(theme=theme, complaints=count, last_at=last) for theme, count, last in themes
        ],
        latest_scores=[
            schemas.Score(scale=scale, value=float(value), at=at, feedback_id=item_id)
            for item_id, scale, value, at in scores
            if scale and _is_number(value)
        ],
        awareness_gaps=gaps,
        suggested_questions=await _suggested_questions(session, theme_names),
    )


def topic_keys_for(theme: str) -> list[str]:
    """The question topics (as keys) that match a theme: the theme itself and each of its leading words
    ("support_responsiveness" is matched by "support_responsiveness" and "support")."""
    words = theme.split("_")
    return ["_".join(words[:end]) for end in range(len(words), 0, -1)]


async def _suggested_questions(session: AsyncSession, themes: Sequence[str]) -> list[schemas.SuggestedQuestion]:
    matched_by: dict[str, list[str]] = {}
    for theme in themes:
        for key in topic_keys_for(theme):
            matched_by.setdefault(key, []).append(theme)
    questions = await repository.open_questions_on(session, list(matched_by), limit=SUGGESTED_QUESTIONS)
    return [
        schemas.SuggestedQuestion(
            question_id=str(q.id), text=q.text, topic=q.topic, themes=list(dict.fromkeys(matched_by[q.topic_key]))
        )
        for q in questions
    ]


def _newest(items: Sequence[CustomerItemRow], flag: str) -> list[CustomerItemRow]:
    chosen = [item for item in items if getattr(item, flag)]
    return sorted(chosen, key=lambda i: (i.updated_at, i.item_id), reverse=True)[:BRIEF_LIST_LIMIT]


def _expectation(item: CustomerItemRow) -> schemas.BriefExpectation:
    detail = item.detail or {}
    return schemas.BriefExpectation(
        expectation_id=item.item_id,
        statement=_text(detail.get("statement")),
        restatement=_text(detail.get("restatement")),
        priority=_text(detail.get("priority")),
        capability=_text(detail.get("capability")),
        meeting_id=_text(detail.get("meeting_id")),
        updated_at=item.updated_at,
    )


def _promise(item: CustomerItemRow) -> schemas.BriefPromise:
    detail = item.detail or {}
    due = detail.get("due_at")
    return schemas.BriefPromise(
        commitment_id=item.item_id,
        title=_text(detail.get("title")),
        department=_text(detail.get("department")),
        due_at=datetime.fromisoformat(due) if isinstance(due, str) else None,
        status=_text(detail.get("status")),
        broken_because=_text(detail.get("broken_because")),
        broken_at=item.broken_at,
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _is_number(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


# The survey cadence (services/customers/survey.py): fired by services/customers/scheduler.py


async def fire_reached_surveys(*, session: AsyncSession, limit: int, cadence: SurveyCadence) -> list[FiredMoment]:
    """Mark every customer whose survey moment has come as due, with `customer.survey_due`.

    The claim skips rows another replica holds, and the state change and its outbox row
    commit together, so each moment fires once.
    """
    rows = await repository.fire_reached_surveys(
        session, interval=cadence.interval, after_a_survey=cadence.after_a_survey, limit=limit
    )
    if not rows:
        return []
    now = datetime.now(UTC)
    counts = await repository.counts_of(session, [row.customer_id for row in rows])
    records = []
    fired = []
    for row in rows:
        customer = _customer_of(row, counts.get(row.customer_id, NO_COUNTS), cadence)
        records.append(
            build_event(
                catalogue.CUSTOMER_SURVEY_DUE, data=customer, subject=row.customer_id, customer_id=row.customer_id
            )
        )
        moment = row.last_survey_due_at or now
        fired.append(FiredMoment(catalogue.CUSTOMER_SURVEY_DUE.type, (now - moment).total_seconds()))
    # A moment fires whatever its event's size: the scheduler must not stall on one customer.
    await add_records(session, records, refuse_oversized=False)
    return fired


async def next_survey_moment(*, session: AsyncSession, cadence: SurveyCadence) -> tuple[datetime, float] | None:
    """The earliest survey moment and the seconds until it by the database's clock; None if no customer is known."""
    moment, now = await repository.next_survey_moment(
        session, interval=cadence.interval, after_a_survey=cadence.after_a_survey
    )
    return None if moment is None else (moment, (moment - now).total_seconds())
