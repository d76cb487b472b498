"""Every query of the expectations service. Repositories never commit."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import case, select
from sqlalchemy.ext.asyncio import AsyncSession

from services.expectations.models import Expectation, ExpectationVersion, Meeting, MeetingQuestion, Question
from shared.repository import Repository

questions = Repository(Question)
meetings = Repository(Meeting)
expectations = Repository(Expectation)


async def add(
    session: AsyncSession, *rows: Question | Meeting | MeetingQuestion | Expectation | ExpectationVersion
) -> None:
    session.add_all(rows)
    await session.flush()


async def list_questions(
    session: AsyncSession, *, topic: str | None, cursor: str | None, limit: int
) -> Sequence[Question]:
    statement = select(Question)
    if topic is not None:
        statement = statement.where(Question.topic == topic)
    return await questions.page(session, statement, cursor=cursor, limit=limit)


async def existing_question_ids(session: AsyncSession, question_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    found = await session.scalars(select(Question.id).where(Question.id.in_(question_ids)))
    return set(found)


async def get_meeting(session: AsyncSession, meeting_id: uuid.UUID) -> Meeting | None:
    return await meetings.get(session, meeting_id)


async def list_meetings(
    session: AsyncSession, *, customer_id: str | None, cursor: str | None, limit: int
) -> Sequence[Meeting]:
    statement = select(Meeting)
    if customer_id is not None:
        statement = statement.where(Meeting.customer_id == customer_id)
    return await meetings.page(session, statement, cursor=cursor, limit=limit)


async def question_ids_of(session: AsyncSession, meeting_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[uuid.UUID]]:
    """The prepared questions of each meeting, in the order prepared."""
    rows = await session.execute(
        select(MeetingQuestion.meeting_id, MeetingQuestion.question_id)
        .where(MeetingQuestion.meeting_id.in_(meeting_ids))
        .order_by(MeetingQuestion.meeting_id, MeetingQuestion.position)
    )
    by_meeting: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for meeting_id, question_id in rows:
        by_meeting[meeting_id].append(question_id)
    return by_meeting


async def get_expectation(
    session: AsyncSession, expectation_id: uuid.UUID, *, for_update: bool = False
) -> Expectation | None:
    """The expectation; `for_update` locks it so that confirmations and revisions take turns."""
    return await expectations.get(session, expectation_id, for_update=for_update)


async def list_expectations(
    session: AsyncSession,
    *,
    customer_id: str | None,
    meeting_id: uuid.UUID | None,
    status: str | None,
    capability: str | None,
    cursor: str | None,
    limit: int,
) -> Sequence[Expectation]:
    statement = select(Expectation)
    if customer_id is not None:
        statement = statement.where(Expectation.customer_id == customer_id)
    if meeting_id is not None:
        statement = statement.where(Expectation.meeting_id == meeting_id)
    if status is not None:
        statement = statement.where(Expectation.status == status)
    if capability is not None:
        statement = statement.where(Expectation.capability == capability)
    return await expectations.page(session, statement, cursor=cursor, limit=limit)


_PRIORITY_RANK = case({"high": 0, "medium": 1, "low": 2}, value=Expectation.priority)


async def customer_expectations(session: AsyncSession, customer_id: str) -> Sequence[Expectation]:
    """Every expectation of a customer: key points first, then by priority, oldest first."""
    statement = (
        select(Expectation)
        .where(Expectation.customer_id == customer_id)
        .order_by(Expectation.key_point.desc(), _PRIORITY_RANK, Expectation.created_at, Expectation.id)
    )
    return (await session.scalars(statement)).all()


async def history_of(
    session: AsyncSession, expectation_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[ExpectationVersion]]:
    """The earlier versions of each expectation, oldest first."""
    rows = await session.scalars(
        select(ExpectationVersion)
        .where(ExpectationVersion.expectation_id.in_(expectation_ids))
        .order_by(ExpectationVersion.expectation_id, ExpectationVersion.version)
    )
    by_expectation: dict[uuid.UUID, list[ExpectationVersion]] = defaultdict(list)
    for version in rows:
        by_expectation[version.expectation_id].append(version)
    return by_expectation
