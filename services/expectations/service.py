"""The rules of clarifying what a customer expects.

Questions are classified when saved; a meeting needs two distinct staff
members (one asks, one listens) and prepared questions; an expectation is
recorded under a meeting in the customer's words with our restatement, and
stays unconfirmed until the customer confirms that restatement. A revision is
a new version that needs confirming again; earlier versions are kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from services.expectations import models, repository, schemas
from services.expectations.questions import classify
from shared.catalogue import (
    EXPECTATION_CONFIRMED,
    EXPECTATION_GAP_IDENTIFIED,
    EXPECTATION_RECORDED,
    MEETING_RECORDED,
    QUESTION_CREATED,
    EventSpec,
)
from shared.errors import Conflict, NotFound, Unprocessable, field_error
from shared.outbox import add_event
from shared.pagination import Page, page_of
from shared.schemas import CustomerKind
from shared.themes import Taxonomy

STAFF_NEEDED = 2
# Clocks of the caller and ours may differ a little; a meeting is not recorded ahead of time.
HELD_AT_CLOCK_SKEW = timedelta(minutes=5)
GAPS = (schemas.Capability.PARTIAL, schemas.Capability.CANNOT_MEET)
# The key of the gap backlog's group of gaps that mention no theme of the taxonomy.
UNTHEMED = repository.UNTHEMED


# Questions


async def record_question(session: AsyncSession, *, question: schemas.QuestionCreate) -> schemas.Question:
    classification = classify(question.text)
    row = models.Question(
        id=uuid.uuid4(),
        text=question.text,
        topic=question.topic,
        open_ended=classification.open_ended,
        rule=classification.rule.value,
        guidance=classification.guidance,
        created_at=datetime.now(UTC),
    )
    await repository.add(session, row)
    created = schemas.Question.model_validate(row)
    # About no customer: keyed by the question's own id (contract §2, v1.1).
    subject = str(row.id)
    await add_event(session, QUESTION_CREATED, data=created, subject=subject, customer_id=subject)
    return created


async def list_questions(
    session: AsyncSession, *, topic: str | None, cursor: str | None, limit: int
) -> Page[schemas.Question]:
    rows = await repository.list_questions(session, topic=topic, cursor=cursor, limit=limit)
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page(items=[schemas.Question.model_validate(r) for r in items], next_cursor=next_cursor)


# Meetings


async def record_meeting(
    session: AsyncSession, *, meeting: schemas.MeetingCreate, departments: Sequence[str]
) -> schemas.Meeting:
    enforce_two_person_rule(meeting.attendees)
    now = datetime.now(UTC)
    if meeting.held_at > now + HELD_AT_CLOCK_SKEW:
        raise field_error(["body", "held_at"], "is in the future; record a meeting once it has been held")
    errors: list[dict[str, object]] = [
        {"loc": ["body", "attendees", i, "department"], "msg": f"is not one of {', '.join(departments)}"}
        for i, attendee in enumerate(meeting.attendees)
        if attendee.department not in departments
    ]
    errors += await _question_id_errors(session, meeting.question_ids)
    if errors:
        raise Unprocessable("; ".join(_describe(e) for e in errors), errors=errors)
    row = models.Meeting(
        id=uuid.uuid4(),
        customer_id=meeting.customer_id,
        customer_kind=meeting.customer_kind.value,
        held_at=meeting.held_at,
        attendees=[a.model_dump(mode="json") for a in meeting.attendees],
        customer_participants=[p.model_dump(mode="json") for p in meeting.customer_participants],
        notes=meeting.notes,
        created_at=now,
    )
    prepared = [
        models.MeetingQuestion(meeting_id=row.id, position=position, question_id=question_id)
        for position, question_id in enumerate(meeting.question_ids)
    ]
    await repository.add(session, row, *prepared)
    recorded = _meeting(row, meeting.question_ids)
    await add_event(session, MEETING_RECORDED, data=recorded, subject=str(row.id), customer_id=row.customer_id)
    return recorded


def enforce_two_person_rule(attendees: Sequence[schemas.Attendee]) -> None:
    """Two distinct staff members meet the customer: one asks while the other listens."""
    distinct = {a.staff_id: a for a in attendees}
    if len(distinct) >= STAFF_NEEDED:
        return
    rule = "A meeting needs two staff members, one to ask and one to listen"
    if not attendees:
        detail = f"{rule}; no staff member is listed in attendees: both are missing."
    else:
        only = attendees[0]
        listed = f"{only.name} ({only.staff_id})"
        if len(attendees) == 1:
            detail = f"{rule}; only {listed} attended: a second staff member is missing."
        else:
            detail = (
                f"{rule}; attendees lists {listed} {len(attendees)} times: a second, different staff member is missing."
            )
    raise Unprocessable(
        detail,
        slug="two-person-rule",
        title="Two-person rule",
        errors=[{"loc": ["body", "attendees"], "msg": f"needs at least {STAFF_NEEDED} distinct staff_id values"}],
        missing=STAFF_NEEDED - len(distinct),
    )


async def _question_id_errors(session: AsyncSession, question_ids: Sequence[uuid.UUID]) -> list[dict[str, object]]:
    known = await repository.existing_question_ids(session, question_ids)
    errors: list[dict[str, object]] = []
    seen: set[uuid.UUID] = set()
    for i, question_id in enumerate(question_ids):
        if question_id not in known:
            errors.append({"loc": ["body", "question_ids", i], "msg": f"no question has the id {question_id}"})
        elif question_id in seen:
            errors.append({"loc": ["body", "question_ids", i], "msg": "is listed more than once"})
        seen.add(question_id)
    return errors


def _describe(error: dict[str, object]) -> str:
    loc = error["loc"]
    where = ".".join(str(part) for part in loc if part != "body") if isinstance(loc, list) else str(loc)
    return f"{where}: {error['msg']}"


async def get_meeting(session: AsyncSession, *, meeting_id: uuid.UUID) -> schemas.Meeting:
    row = await _meeting_row(session, meeting_id)
    question_ids = await repository.question_ids_of(session, [row.id])
    return _meeting(row, question_ids.get(row.id, []))


async def list_meetings(
    session: AsyncSession,
    *,
    customer_id: str | None,
    customer_kind: CustomerKind | None,
    cursor: str | None,
    limit: int,
) -> Page[schemas.Meeting]:
    rows = await repository.list_meetings(
        session,
        customer_id=customer_id,
        customer_kind=customer_kind.value if customer_kind is not None else None,
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    question_ids = await repository.question_ids_of(session, [r.id for r in items])
    return Page(items=[_meeting(r, question_ids.get(r.id, [])) for r in items], next_cursor=next_cursor)


async def _meeting_row(session: AsyncSession, meeting_id: uuid.UUID) -> models.Meeting:
    row = await repository.get_meeting(session, meeting_id)
    if row is None:
        raise NotFound(f"No meeting has the id {meeting_id}.")
    return row


def _meeting(row: models.Meeting, question_ids: Sequence[uuid.UUID]) -> schemas.Meeting:
    return schemas.Meeting(
        id=row.id,
        customer_id=row.customer_id,
        customer_kind=CustomerKind(row.customer_kind),
        held_at=row.held_at.astimezone(UTC),
        attendees=[schemas.StaffMember.model_validate(a) for a in row.attendees],
        customer_participants=[schemas.Participant.model_validate(p) for p in row.customer_participants],
        question_ids=list(question_ids),
        notes=row.notes,
        created_at=row.created_at,
    )


# Expectations


async def record_expectation(
    session: AsyncSession, *, meeting_id: uuid.UUID, expectation: schemas.ExpectationCreate, taxonomy: Taxonomy
) -> schemas.Expectation:
    meeting = await _meeting_row(session, meeting_id)
    await _check_question_was_prepared(session, meeting.id, expectation.question_id)
    now = datetime.now(UTC)
    row = models.Expectation(
        id=uuid.uuid4(),
        meeting_id=meeting.id,
        customer_id=meeting.customer_id,
        customer_kind=meeting.customer_kind,
        version=1,
        status=schemas.ExpectationStatus.RECORDED.value,
        confirmed_by=None,
        confirmation_note=None,
        confirmed_at=None,
        recorded_at=now,
        created_at=now,
        updated_at=now,
        **_heard(expectation, taxonomy),
    )
    await repository.add(session, row)
    recorded = _expectation(row, [])
    await _announce_recorded(session, recorded)
    return recorded


async def confirm_expectation(
    session: AsyncSession, *, expectation_id: uuid.UUID, confirmation: schemas.ConfirmationCreate
) -> schemas.Expectation:
    """The customer confirms our restatement; confirming a confirmed version again changes nothing."""
    row = await _expectation_row(session, expectation_id, for_update=True)
    if confirmation.version is not None and confirmation.version != row.version:
        raise Conflict(
            f"The customer confirmed version {confirmation.version}, but the current version is {row.version}; "
            "confirm the current restatement with the customer.",
            slug="expectation-revised",
            current_version=row.version,
        )
    history = (await repository.history_of(session, [row.id])).get(row.id, [])
    if row.status == schemas.ExpectationStatus.CONFIRMED:
        return _expectation(row, history)
    now = datetime.now(UTC)
    row.status = schemas.ExpectationStatus.CONFIRMED.value
    row.confirmed_by = confirmation.confirmed_by
    row.confirmation_note = confirmation.note
    row.confirmed_at = now
    row.updated_at = now
    await session.flush()
    confirmed = _expectation(row, history)
    await _announce(session, EXPECTATION_CONFIRMED, confirmed)
    return confirmed


async def revise_expectation(
    session: AsyncSession, *, expectation_id: uuid.UUID, expectation: schemas.ExpectationCreate, taxonomy: Taxonomy
) -> schemas.Expectation:
    """A new version, back to `recorded` until the customer confirms it; the old one joins the history."""
    row = await _expectation_row(session, expectation_id, for_update=True)
    await _check_question_was_prepared(session, row.meeting_id, expectation.question_id)
    now = datetime.now(UTC)
    await repository.add(
        session,
        models.ExpectationVersion(
            expectation_id=row.id,
            superseded_at=now,
            **{field: getattr(row, field) for field in models.VERSION_FIELDS},
        ),
    )
    for field, value in _heard(expectation, taxonomy).items():
        setattr(row, field, value)
    row.version += 1
    row.status = schemas.ExpectationStatus.RECORDED.value
    row.confirmed_by = row.confirmation_note = None
    row.confirmed_at = None
    row.recorded_at = row.updated_at = now
    await session.flush()
    history = (await repository.history_of(session, [row.id])).get(row.id, [])
    revised = _expectation(row, history)
    await _announce_recorded(session, revised)
    return revised


async def get_expectation(session: AsyncSession, *, expectation_id: uuid.UUID) -> schemas.Expectation:
    row = await _expectation_row(session, expectation_id)
    history = await repository.history_of(session, [row.id])
    return _expectation(row, history.get(row.id, []))


async def list_expectations(
    session: AsyncSession,
    *,
    customer_id: str | None,
    meeting_id: uuid.UUID | None,
    status: schemas.ExpectationStatus | None,
    capability: schemas.Capability | None,
    customer_kind: CustomerKind | None,
    cursor: str | None,
    limit: int,
) -> Page[schemas.Expectation]:
    rows = await repository.list_expectations(
        session,
        customer_id=customer_id,
        meeting_id=meeting_id,
        status=status.value if status is not None else None,
        capability=capability.value if capability is not None else None,
        customer_kind=customer_kind.value if customer_kind is not None else None,
        cursor=cursor,
        limit=limit,
    )
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return Page(items=await _expectations(session, items), next_cursor=next_cursor)


async def customer_expectations(session: AsyncSession, *, customer_id: str) -> schemas.CustomerExpectations:
    """The current version of each expectation of a customer, key points first."""
    expectations = await _expectations(session, await repository.customer_expectations(session, customer_id))
    return schemas.CustomerExpectations(
        customer_id=customer_id,
        expectations=expectations,
        unconfirmed_ids=[e.id for e in expectations if e.status != schemas.ExpectationStatus.CONFIRMED],
        cannot_meet_ids=[e.id for e in expectations if e.capability == schemas.Capability.CANNOT_MEET],
        partial_ids=[e.id for e in expectations if e.capability == schemas.Capability.PARTIAL],
    )


async def gap_backlog(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime | None,
    customer_kind: CustomerKind | None,
    taxonomy: Taxonomy,
    themes: int,
    examples: int,
) -> schemas.GapBacklog:
    """The capability gaps (current versions) recorded in [since, until), grouped by theme, most customers first."""
    if since is not None and until is not None and since >= until:
        raise field_error(["query", "until"], "must be after since")
    groups = await repository.gap_groups(
        session,
        since=since,
        until=until,
        customer_kind=customer_kind.value if customer_kind is not None else None,
        themes=themes,
        examples=examples,
    )
    labels = {theme.key: theme.label for theme in taxonomy.themes} | {UNTHEMED: "Unthemed"}
    return schemas.GapBacklog(
        themes=[
            schemas.GapTheme(
                theme=group.theme,
                label=labels.get(group.theme, group.theme),
                customers=group.customers,
                expectations=group.expectations,
                examples=[
                    schemas.GapExample(
                        expectation_id=e.expectation_id, customer_id=e.customer_id, statement=e.statement
                    )
                    for e in group.examples
                ],
            )
            for group in groups
        ]
    )


async def _expectations(session: AsyncSession, rows: Sequence[models.Expectation]) -> list[schemas.Expectation]:
    history = await repository.history_of(session, [r.id for r in rows]) if rows else {}
    return [_expectation(r, history.get(r.id, [])) for r in rows]


async def _expectation_row(
    session: AsyncSession, expectation_id: uuid.UUID, *, for_update: bool = False
) -> models.Expectation:
    row = await repository.get_expectation(session, expectation_id, for_update=for_update)
    if row is None:
        raise NotFound(f"No expectation has the id {expectation_id}.")
    return row


async def _check_question_was_prepared(
    session: AsyncSession, meeting_id: uuid.UUID, question_id: uuid.UUID | None
) -> None:
    if question_id is None:
        return
    prepared = (await repository.question_ids_of(session, [meeting_id])).get(meeting_id, [])
    if question_id not in prepared:
        raise field_error(["body", "question_id"], "is not one of the questions prepared for this meeting")


def _heard(expectation: schemas.ExpectationCreate, taxonomy: Taxonomy) -> dict[str, object]:
    """The columns a version takes from what was heard in the meeting, with the themes it mentions."""
    return {
        "themes": taxonomy.themes_of(expectation.statement, expectation.restatement),
        "statement": expectation.statement,
        "restatement": expectation.restatement,
        "priority": expectation.priority.value,
        "key_point": expectation.key_point,
        "measure": expectation.measure,
        "capability": expectation.capability.value,
        "question_id": expectation.question_id,
    }


async def _announce_recorded(session: AsyncSession, expectation: schemas.Expectation) -> None:
    await _announce(session, EXPECTATION_RECORDED, expectation)
    if expectation.capability in GAPS:
        await _announce(session, EXPECTATION_GAP_IDENTIFIED, expectation)


async def _announce(session: AsyncSession, spec: EventSpec, expectation: schemas.Expectation) -> None:
    await add_event(session, spec, data=expectation, subject=str(expectation.id), customer_id=expectation.customer_id)


def _expectation(row: models.Expectation, history: Sequence[models.ExpectationVersion]) -> schemas.Expectation:
    return schemas.Expectation(
        id=row.id,
        meeting_id=row.meeting_id,
        customer_id=row.customer_id,
        customer_kind=CustomerKind(row.customer_kind),
        status=schemas.ExpectationStatus(row.status),
        version=row.version,
        statement=row.statement,
        restatement=row.restatement,
        priority=schemas.Priority(row.priority),
        key_point=row.key_point,
        measure=row.measure,
        capability=schemas.Capability(row.capability),
        themes=list(row.themes),
        question_id=row.question_id,
        confirmation=row.confirmation,
        history=[schemas.ExpectationVersion.model_validate(v) for v in history],
        recorded_at=row.recorded_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
