"""Every query of the commitments service. Nothing here commits."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Row,
    Select,
    Text,
    any_,
    bindparam,
    case,
    false,
    func,
    literal,
    null,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from services.commitments import schemas
from services.commitments.models import Commitment, ResponsePolicy
from services.commitments.rollup import accountability_statement
from shared.events import OutboxRecord
from shared.pagination import keyset_page
from shared.repository import Repository

# Announced on create and reschedule; every scheduler replica LISTENs.
SCHEDULE_CHANNEL = "commitment_schedule"
UNMET = ("open", "due_soon", "overdue")
commitments = Repository(Commitment)


@dataclass(frozen=True)
class CommitmentFilter:
    customer_id: str | None = None
    department: str | None = None
    owner_id: str | None = None
    statuses: Sequence[str] = ()
    due_before: datetime | None = None
    source_type: str | None = None
    source_id: str | None = None
    kinds: Sequence[str] = ()
    customer_kind: str | None = None


class NewPromise(NamedTuple):
    """A new promise as the API shows it, with its `commitment.created` event."""

    commitment: schemas.Commitment
    event: OutboxRecord


# One statement for any number of new promises, each armed for its due-soon moment (as `service._arm` arms a
# rescheduled one), in the given order. The rollup triggers (commitments_0008, 0009) fire once and see every row.
_ADD_PROMISES = text(
    """
INSERT INTO commitment (id, customer_id, customer_kind, title, description, owner_id, department, due_at,
    due_soon_at, source_type, source_id, status, renegotiations, history, kind, excuses, next_event,
    next_event_at, created_at, updated_at)
SELECT id, customer_id, customer_kind, title, description, owner_id, department, due_at,
    due_soon_at, source_type, source_id, status, 0, '[]', kind, 0, 'due_soon', due_soon_at, created_at, created_at
FROM unnest(
    CAST(:ids AS uuid[]), CAST(:customer_ids AS text[]), CAST(:customer_kinds AS text[]),
    CAST(:titles AS text[]), CAST(:descriptions AS text[]), CAST(:owner_ids AS text[]),
    CAST(:departments AS text[]), CAST(:due_at AS timestamptz[]), CAST(:due_soon_at AS timestamptz[]),
    CAST(:source_types AS text[]), CAST(:source_ids AS text[]), CAST(:statuses AS text[]),
    CAST(:kinds AS text[]), CAST(:created_at AS timestamptz[])
) WITH ORDINALITY AS p(id, customer_id, customer_kind, title, description, owner_id, department, due_at,
    due_soon_at, source_type, source_id, status, kind, created_at, position)
ORDER BY position
"""
)


async def add_promises(session: AsyncSession, made: Sequence[schemas.Commitment]) -> None:
    """Insert new open promises (no renegotiation, history or excuse yet), armed for their due-soon moment."""
    await session.execute(
        _ADD_PROMISES,
        {
            "ids": [c.id for c in made],
            "customer_ids": [c.customer_id for c in made],
            "customer_kinds": [c.customer_kind for c in made],
            "titles": [c.title for c in made],
            "descriptions": [c.description for c in made],
            "owner_ids": [c.owner_id for c in made],
            "departments": [c.department for c in made],
            "due_at": [c.due_at for c in made],
            "due_soon_at": [c.due_soon_at for c in made],
            "source_types": [c.source.type for c in made],
            "source_ids": [c.source.id for c in made],
            "statuses": [c.status for c in made],
            "kinds": [c.kind for c in made],
            "created_at": [c.created_at for c in made],
        },
    )


async def feedback_with_response_promises(
    session: AsyncSession, *, feedback_ids: Sequence[str], kinds: Sequence[str]
) -> set[str]:
    """Which of `feedback_ids` have a response promise of `kinds`."""
    statement = (
        select(Commitment.source_id)
        .where(
            Commitment.source_type == "feedback",
            # One statement text whatever the number of ids (an IN list is compiled for each length).
            Commitment.source_id == any_(bindparam("feedback_ids", list(feedback_ids), type_=ARRAY(Text))),
            Commitment.kind.in_(kinds),
        )
        .distinct()
    )
    return {str(feedback_id) for feedback_id in (await session.scalars(statement)).all()}


async def response_promises(
    session: AsyncSession, *, feedback_id: str, kinds: Sequence[str], unmet_only: bool
) -> Sequence[Commitment]:
    """The response promises made for a feedback (locked, when only the unmet ones are asked for)."""
    statement = select(Commitment).where(
        Commitment.source_type == "feedback", Commitment.source_id == feedback_id, Commitment.kind.in_(kinds)
    )
    if unmet_only:
        statement = statement.where(Commitment.status.in_(UNMET)).with_for_update()
    rows: Sequence[Commitment] = (await session.execute(statement.order_by(Commitment.created_at))).scalars().all()
    return rows


async def policies(session: AsyncSession) -> Sequence[ResponsePolicy]:
    rows: Sequence[ResponsePolicy] = (
        (await session.execute(select(ResponsePolicy).order_by(ResponsePolicy.name))).scalars().all()
    )
    return rows


async def policy(session: AsyncSession, name: str, *, for_update: bool = False) -> ResponsePolicy | None:
    statement = select(ResponsePolicy).where(ResponsePolicy.name == name)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()


async def add_policy(session: AsyncSession, policy: ResponsePolicy) -> None:
    session.add(policy)
    await session.flush()


async def delete_policy(session: AsyncSession, policy: ResponsePolicy) -> None:
    await session.delete(policy)
    await session.flush()


async def get(session: AsyncSession, commitment_id: uuid.UUID, *, for_update: bool = False) -> Commitment | None:
    return await commitments.get(session, commitment_id, for_update=for_update)


async def page(
    session: AsyncSession, *, where: CommitmentFilter, cursor: str | None, limit: int
) -> Sequence[Commitment]:
    """Up to `limit + 1` commitments matching `where`, newest first, after `cursor`."""
    conditions: list[ColumnElement[bool]] = []
    if where.customer_id is not None:
        conditions.append(Commitment.customer_id == where.customer_id)
    if where.department is not None:
        conditions.append(Commitment.department == where.department)
    if where.owner_id is not None:
        conditions.append(Commitment.owner_id == where.owner_id)
    if where.statuses:
        conditions.append(Commitment.status.in_(where.statuses))
    if where.due_before is not None:
        conditions.append(Commitment.due_at < where.due_before)
    if where.source_type is not None:
        conditions.append(Commitment.source_type == where.source_type)
    if where.source_id is not None:
        conditions.append(Commitment.source_id == where.source_id)
    if where.kinds:
        conditions.append(Commitment.kind.in_(where.kinds))
    if where.customer_kind is not None:
        conditions.append(Commitment.customer_kind == where.customer_kind)
    if where.due_before is not None:
        return await _page_due_before(session, select(Commitment).where(*conditions), where.due_before, cursor, limit)
    return await commitments.page(session, select(Commitment).where(*conditions), cursor=cursor, limit=limit)


async def _page_due_before(
    session: AsyncSession, statement: Select[Any], due_before: datetime, cursor: str | None, limit: int
) -> Sequence[Commitment]:
    """`page` for promises due before a moment, without walking every newer promise.

    A promise is made before it is due, so those due before `due_before` were
    made before it too: the newest-first walk starts at `due_before` in
    `(created_at, id)`, not at the newest promise. The only exceptions, made
    after their due date (a response promise due from feedback older than the
    promise), are a walk of their own partial index (commitments_0010); the
    two walks are merged.
    """
    c = Commitment
    walks = [
        statement.where(c.created_at < due_before),
        statement.where(c.created_at >= due_before, c.due_at < c.created_at),
    ]
    paged = [keyset_page(walk, created_at=c.created_at, item_id=c.id, cursor=cursor, limit=limit) for walk in walks]
    merged = aliased(Commitment, union_all(*paged).subquery("due_before"))
    newest = select(merged).order_by(merged.created_at.desc(), merged.id.desc()).limit(limit + 1)
    rows: Sequence[Commitment] = (await session.scalars(newest)).all()
    return rows


def _advance_reached_statement() -> Any:
    reached = (
        select(Commitment.id)
        .where(Commitment.next_event_at <= func.statement_timestamp())
        .order_by(Commitment.next_event_at)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("reached")
    )
    to_due_soon = Commitment.next_event == "due_soon"
    to_overdue = Commitment.next_event == "overdue"
    return (
        update(Commitment)
        .where(Commitment.id == reached.c.id)
        .values(
            status=Commitment.next_event,
            next_event=case((to_due_soon, literal("overdue")), else_=null()),
            next_event_at=case((to_due_soon, Commitment.due_at), else_=null()),
            # Going overdue breaks the promise; one broken earlier keeps its first reason.
            kept=case((to_overdue, false()), else_=Commitment.kept),
            broken_because=case(
                (to_overdue, func.coalesce(Commitment.broken_because, literal("overdue"))),
                else_=Commitment.broken_because,
            ),
            updated_at=func.statement_timestamp(),
        )
        .returning(Commitment)
        .execution_options(synchronize_session=False)
    )


# Built once: the scheduler runs it on every wake-up.
_ADVANCE_REACHED = _advance_reached_statement()
_NEXT_MOMENT = select(func.min(Commitment.next_event_at), func.clock_timestamp())


async def advance_reached(session: AsyncSession, *, limit: int) -> Sequence[Commitment]:
    """Move up to `limit` promises whose moment has come one step, in one statement; return them after.

    A reached due-soon moment makes the promise `due_soon` and arms overdue at
    `due_at`; a reached overdue moment makes it `overdue` and disarms it. Rows
    another replica holds are skipped, never waited for.
    """
    return (await session.execute(_ADVANCE_REACHED, {"limit": limit})).scalars().all()


async def next_moment(session: AsyncSession) -> tuple[datetime | None, datetime]:
    """The earliest armed moment (one index probe) and the database's clock."""
    row = (await session.execute(_NEXT_MOMENT)).one()
    return row[0], row[1]


async def accountability(
    session: AsyncSession,
    *,
    since: datetime | None,
    until: datetime | None,
    department: str | None,
    owner_id: str | None,
    now: datetime,
    customer_kind: str | None = None,
) -> Sequence[Row[Any]]:
    """Counts per department, per owner, per kind and in total for promises due in [since, until).

    Whole days and months come from `commitment_rollup` (kept by triggers in
    each write's transaction), the rest from the table (`rollup.py`).
    """
    filters = {"department": department, "owner_id": owner_id, "customer_kind": customer_kind}
    statement, params = accountability_statement(
        since=since, until=until, now=now, filters={name: value for name, value in filters.items() if value is not None}
    )
    rows: Sequence[Row[Any]] = (await session.execute(statement, params)).all()
    return rows
