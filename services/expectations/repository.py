"""Every query of the expectations service. Repositories never commit."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import ColumnElement, case, distinct, func, literal_column, select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from services.expectations.models import (
    GAP_CAPABILITIES,
    Expectation,
    ExpectationVersion,
    Meeting,
    MeetingQuestion,
    Question,
)
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
    session: AsyncSession, *, customer_id: str | None, customer_kind: str | None, cursor: str | None, limit: int
) -> Sequence[Meeting]:
    statement = select(Meeting)
    if customer_id is not None:
        statement = statement.where(Meeting.customer_id == customer_id)
    if customer_kind is not None:
        statement = statement.where(Meeting.customer_kind == customer_kind)
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
    customer_kind: str | None,
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
    if customer_kind is not None:
        statement = statement.where(Expectation.customer_kind == customer_kind)
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


# The demand backlog

UNTHEMED = "unthemed"
# Each gap under each of its themes, or under UNTHEMED when it mentions none (a constant, no client text).
_THEME_OF_GAP: ColumnElement[str] = literal_column(
    f"unnest(CASE WHEN cardinality(themes) = 0 THEN ARRAY['{UNTHEMED}'] ELSE themes END)"
)


@dataclass(frozen=True)
class GapExampleRow:
    expectation_id: uuid.UUID
    customer_id: str
    statement: str


@dataclass
class GapGroup:
    theme: str
    customers: int
    expectations: int
    examples: list[GapExampleRow] = field(default_factory=list)


async def gap_groups(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime | None,
    customer_kind: str | None,
    themes: int,
    examples: int,
) -> list[GapGroup]:
    """The `themes` groups of gaps with the most distinct customers, each with `examples` gaps of distinct customers.

    Only current versions count (`expectation` holds them; superseded ones are in `expectation_version`),
    read along the partial gap indexes by `recorded_at`.
    """
    conditions: list[ColumnElement[bool]] = [Expectation.capability.in_(GAP_CAPABILITIES)]
    if since is not None:
        conditions.append(Expectation.recorded_at >= since)
    if until is not None:
        conditions.append(Expectation.recorded_at < until)
    if customer_kind is not None:
        conditions.append(Expectation.customer_kind == customer_kind)
    gap = (
        select(
            Expectation.id,
            Expectation.customer_id,
            Expectation.statement,
            Expectation.recorded_at,
            _THEME_OF_GAP.label("theme"),
        )
        .where(*conditions)
        .cte("gap")
    )
    customers = func.count(distinct(gap.c.customer_id))
    counted = await session.execute(
        select(gap.c.theme, customers.label("customers"), func.count().label("expectations"))
        .group_by(gap.c.theme)
        .order_by(customers.desc(), func.count().desc(), gap.c.theme)
        .limit(themes)
    )
    groups = {row.theme: GapGroup(row.theme, row.customers, row.expectations) for row in counted}
    if not groups:
        return []
    # Each customer's latest gap under a theme, then the latest `examples` of those.
    latest_per_customer = (
        select(gap.c.theme, gap.c.id, gap.c.customer_id, gap.c.statement, gap.c.recorded_at)
        .where(gap.c.theme.in_(list(groups)))
        .ext(distinct_on(gap.c.theme, gap.c.customer_id))
        .order_by(gap.c.theme, gap.c.customer_id, gap.c.recorded_at.desc(), gap.c.id.desc())
        .subquery()
    )
    ranked = select(
        latest_per_customer,
        func.row_number()
        .over(
            partition_by=latest_per_customer.c.theme,
            order_by=(latest_per_customer.c.recorded_at.desc(), latest_per_customer.c.id.desc()),
        )
        .label("rank"),
    ).subquery()
    shown = await session.execute(
        select(ranked.c.theme, ranked.c.id, ranked.c.customer_id, ranked.c.statement)
        .where(ranked.c.rank <= examples)
        .order_by(ranked.c.theme, ranked.c.rank)
    )
    for row in shown:
        groups[row.theme].examples.append(GapExampleRow(row.id, row.customer_id, row.statement))
    return list(groups.values())
