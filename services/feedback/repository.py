"""Every query of the feedback service. Repositories never commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    ColumnElement,
    DateTime,
    Float,
    Interval,
    Row,
    and_,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.feedback.models import FeedbackRow, ResolutionRow, StatusChangeRow
from shared.events import OutboxRecord
from shared.group_commit import GroupCommit
from shared.outbox import OutboxValues, ensure_fits, max_event_bytes, outbox_values
from shared.pagination import keyset_page


@dataclass(frozen=True)
class FeedbackFilter:
    """What a list or the metrics are narrowed to; `since` inclusive, `until` exclusive (on `occurred_at`)."""

    customer_id: str | None = None
    kind: str | None = None
    channel: str | None = None
    status: str | None = None
    product: str | None = None
    tag: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class NewFeedback(NamedTuple):
    """A feedback row to insert."""

    id: uuid.UUID
    customer_id: str
    customer_kind: str
    channel: str
    kind: str
    text: str | None
    rating_scale: str | None
    rating_value: int | None
    product: str | None
    tags: list[str]
    occurred_at: datetime
    status: str
    sentiment_score: float
    sentiment_label: str
    sentiment_source: str
    themes: list[str]
    created_at: datetime


# New feedback and each one's event, in one statement: each parameter is one column, an array with a value
# per row (a row's tags and themes as JSON, since an array of arrays would be one flat array). One
# statement is atomic on its own: written alone, it needs no BEGIN and COMMIT.
_INSERT = text(
    """
WITH capture AS (
    SELECT * FROM unnest(
        CAST(:id AS uuid[]), CAST(:customer_id AS text[]), CAST(:customer_kind AS text[]), CAST(:channel AS text[]),
        CAST(:kind AS text[]), CAST(:text AS text[]), CAST(:rating_scale AS text[]),
        CAST(:rating_value AS smallint[]), CAST(:product AS text[]), CAST(:tags AS text[]),
        CAST(:occurred_at AS timestamptz[]), CAST(:status AS text[]), CAST(:sentiment_score AS float8[]),
        CAST(:sentiment_label AS text[]), CAST(:sentiment_source AS text[]), CAST(:themes AS text[]),
        CAST(:created_at AS timestamptz[]), CAST(:event_id AS uuid[]), CAST(:topic AS text[]),
        CAST(:key AS text[]), CAST(:event_type AS text[]), CAST(:value AS bytea[])
    ) WITH ORDINALITY AS capture(id, customer_id, customer_kind, channel, kind, text, rating_scale, rating_value,
        product, tags, occurred_at, status, sentiment_score, sentiment_label, sentiment_source, themes, created_at,
        event_id, topic, key, event_type, value, position)
), feedback AS (
    INSERT INTO feedback (id, customer_id, customer_kind, channel, kind, text, rating_scale, rating_value, product,
        tags, occurred_at, status, sentiment_score, sentiment_label, sentiment_source, themes, created_at, updated_at)
    SELECT id, customer_id, customer_kind, channel, kind, text, rating_scale, rating_value, product,
        ARRAY(SELECT jsonb_array_elements_text(CAST(tags AS jsonb))), occurred_at, status, sentiment_score,
        sentiment_label, sentiment_source, ARRAY(SELECT jsonb_array_elements_text(CAST(themes AS jsonb))),
        created_at, created_at
    FROM capture ORDER BY position
)
INSERT INTO outbox_event (event_id, topic, key, event_type, value)
SELECT event_id, topic, key, event_type, value FROM capture ORDER BY position
"""
)

Capture = tuple[NewFeedback, OutboxRecord]


def _columns(captures: Sequence[Capture]) -> dict[str, list[Any]]:
    """The parameters of `_INSERT` for `captures`, in their order."""
    rows = [(*feedback, *outbox_values(event)) for feedback, event in captures]
    names = (*NewFeedback._fields, *OutboxValues._fields)
    columns = {name: list(values) for name, values in zip(names, zip(*rows, strict=True), strict=True)}
    for name in ("tags", "themes"):
        columns[name] = [orjson.dumps(values).decode() for values in columns[name]]
    return columns


def group_captures(
    sessionmaker: async_sessionmaker[AsyncSession], *, observe: Callable[[int], None] = lambda _: None
) -> GroupCommit[Capture]:
    """The app's captures that are their request's only write, written together while others are in flight."""

    async def write_together(captures: list[Capture]) -> None:
        async with sessionmaker() as session:
            # One statement, atomic on its own: without BEGIN and COMMIT, one round trip.
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            await session.execute(_INSERT, _columns(captures))

    # PostgreSQL rejected a row (classes 22 and 23), so none of the batch committed: each is written alone.
    return GroupCommit(write_together, alone_on=(DataError, IntegrityError), observe=observe)


class Captures:
    """Where a request's new feedback goes, with its `feedback.received` event.

    In `session`'s transaction once it has begun one (with an Idempotency-Key, whose row commits with the
    capture's). A session that has begun nothing makes the capture its request's only write: given the
    app's `group_captures`, it is then written in one statement with the captures of concurrent requests
    (shared/group_commit.py), committed when `insert` returns.
    """

    def __init__(self, session: AsyncSession, together: GroupCommit[Capture] | None = None) -> None:
        self._session = session
        self._together = together

    async def insert(self, feedback: NewFeedback, event: OutboxRecord) -> None:
        """Insert one feedback and its event; refuse (422) an event above `CF_MAX_EVENT_BYTES`."""
        ensure_fits(event, max_event_bytes(self._session))
        if self._together is not None and not self._session.in_transaction():
            await self._together.write((feedback, event))
        else:
            await self._session.execute(_INSERT, _columns([(feedback, event)]))


async def get_feedback(
    session: AsyncSession, feedback_id: uuid.UUID, *, for_update: bool = False
) -> FeedbackRow | None:
    statement = select(FeedbackRow).where(FeedbackRow.id == feedback_id)
    if for_update:
        statement = statement.with_for_update()
    return (await session.scalars(statement)).one_or_none()


async def history_of(
    session: AsyncSession, feedback_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[StatusChangeRow]]:
    """Each feedback's lifecycle moves, oldest first."""
    history: dict[uuid.UUID, list[StatusChangeRow]] = {feedback_id: [] for feedback_id in feedback_ids}
    if not feedback_ids:
        return history
    statement = (
        select(StatusChangeRow)
        .where(StatusChangeRow.feedback_id.in_(feedback_ids))
        .order_by(StatusChangeRow.feedback_id, StatusChangeRow.id)
    )
    for change in await session.scalars(statement):
        history[change.feedback_id].append(change)
    return history


async def record_move(
    session: AsyncSession, feedback: FeedbackRow, *, to_status: str, note: str | None, changed_by: str
) -> None:
    """Move `feedback` (locked by the caller) to `to_status` and record the move."""
    # Read before the update: the ORM update also refreshes `feedback` in the session.
    from_status = feedback.status
    changed_at = (
        await session.execute(
            update(FeedbackRow)
            .where(FeedbackRow.id == feedback.id)
            .values(status=to_status, updated_at=func.now())
            .returning(FeedbackRow.updated_at)
        )
    ).scalar_one()
    await session.execute(
        insert(StatusChangeRow).values(
            feedback_id=feedback.id,
            from_status=from_status,
            to_status=to_status,
            note=note,
            changed_by=changed_by,
            changed_at=changed_at,
        )
    )
    await session.refresh(feedback)


async def add_resolution(session: AsyncSession, resolution: ResolutionRow) -> None:
    session.add(resolution)
    await session.flush()


async def resolution(session: AsyncSession, resolution_id: uuid.UUID) -> ResolutionRow | None:
    return (await session.scalars(select(ResolutionRow).where(ResolutionRow.id == resolution_id))).one_or_none()


async def latest_resolutions(
    session: AsyncSession, feedback_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ResolutionRow]:
    """Each feedback's latest move to `resolved`, for those that have one."""
    if not feedback_ids:
        return {}
    # A feedback is resolved a handful of times at most: read them all, keep the last.
    statement = (
        select(ResolutionRow)
        .where(ResolutionRow.feedback_id.in_(feedback_ids))
        .order_by(ResolutionRow.resolved_at, ResolutionRow.id)
    )
    return {row.feedback_id: row for row in await session.scalars(statement)}


async def resolution_figures(session: AsyncSession, where: FeedbackFilter) -> Row[Any]:
    """Verdicts given on resolutions of the filtered feedback: how many, accepted, mean fairness."""
    given = ResolutionRow.given_at.is_not(None)
    statement = (
        select(
            func.count().filter(given).label("verdicts"),
            func.count().filter(ResolutionRow.accepted.is_(True)).label("accepted"),
            func.avg(ResolutionRow.fairness).filter(given).label("fairness_average"),
        )
        .select_from(ResolutionRow)
        .join(FeedbackRow, FeedbackRow.id == ResolutionRow.feedback_id)
        .where(*_conditions(where))
    )
    return (await session.execute(statement)).one()


async def list_feedback(
    session: AsyncSession, where: FeedbackFilter, *, cursor: str | None, limit: int
) -> Sequence[FeedbackRow]:
    """One page newest first, plus one row that says whether there is more."""
    statement = select(FeedbackRow).where(*_conditions(where))
    statement = keyset_page(
        statement, created_at=FeedbackRow.created_at, item_id=FeedbackRow.id, cursor=cursor, limit=limit
    )
    return (await session.scalars(statement)).all()


def _conditions(where: FeedbackFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (FeedbackRow.customer_id, where.customer_id),
        (FeedbackRow.kind, where.kind),
        (FeedbackRow.channel, where.channel),
        (FeedbackRow.status, where.status),
        (FeedbackRow.product, where.product),
    ):
        if value is not None:
            conditions.append(column == value)
    if where.tag is not None:
        conditions.append(FeedbackRow.tags.contains([where.tag]))
    if where.since is not None:
        conditions.append(FeedbackRow.occurred_at >= where.since)
    if where.until is not None:
        conditions.append(FeedbackRow.occurred_at < where.until)
    return conditions


@dataclass(frozen=True)
class Assumptions:
    """The metric settings the figures are computed with."""

    complaining_share: float
    unhappy_tell: float
    happy_tell: float


KINDS = ("complaint", "compliment", "suggestion", "question", "survey_response")


def _figures(columns: Any, assumptions: Assumptions) -> list[ColumnElement[Any]]:
    """The metric figures over `columns` (the feedback table or a CTE of it), computed in SQL."""
    kind, scale, value, customer = columns.kind, columns.rating_scale, columns.rating_value, columns.customer_id
    nps, csat, ces = scale == "nps", scale == "csat", scale == "ces"

    def count_where(*conditions: ColumnElement[bool]) -> ColumnElement[int]:
        return func.count().filter(and_(*conditions))

    def ratio(numerator: ColumnElement[Any], denominator: ColumnElement[Any], scale_by: float = 1.0) -> Any:
        return cast(numerator * literal(scale_by) / func.nullif(denominator, 0), Float)

    complaints = count_where(kind == "complaint")
    compliments = count_where(kind == "compliment")
    promoters = count_where(nps, value >= 9)
    detractors = count_where(nps, value <= 6)
    nps_responses = count_where(nps)
    csat_responses = count_where(csat)
    unhappy = or_(kind == "complaint", and_(nps, value <= 6), and_(csat, value <= 2), and_(ces, value >= 5))
    happy = or_(kind == "compliment", and_(nps, value >= 9), and_(csat, value >= 4), and_(ces, value <= 2))
    unhappy_customers = func.count(customer.distinct()).filter(unhappy)
    happy_customers = func.count(customer.distinct()).filter(happy)
    return [
        func.count(kind).label("total"),
        *(count_where(kind == name).label(f"kind_{name}") for name in KINDS),
        promoters.label("promoters"),
        count_where(nps, value.between(7, 8)).label("passives"),
        detractors.label("detractors"),
        nps_responses.label("nps_responses"),
        ratio(promoters - detractors, nps_responses, 100.0).label("nps_score"),
        csat_responses.label("csat_responses"),
        ratio(count_where(csat, value >= 4), csat_responses, 100.0).label("csat_score"),
        count_where(ces).label("ces_responses"),
        cast(func.avg(value).filter(ces), Float).label("ces_average"),
        ratio(compliments, complaints).label("compliments_per_complaint"),
        cast(complaints / literal(assumptions.complaining_share), Float).label("silent_dissatisfied"),
        unhappy_customers.label("unhappy_customers"),
        happy_customers.label("happy_customers"),
        cast(unhappy_customers * literal(assumptions.unhappy_tell), Float).label("people_told_bad"),
        cast(happy_customers * literal(assumptions.happy_tell), Float).label("people_told_good"),
    ]


async def figures(session: AsyncSession, where: FeedbackFilter, assumptions: Assumptions) -> Row[Any]:
    """The figures over every feedback `where` selects."""
    statement = select(*_figures(FeedbackRow.__table__.c, assumptions)).where(*_conditions(where))
    return (await session.execute(statement)).one()


async def figures_per_period(
    session: AsyncSession, where: FeedbackFilter, assumptions: Assumptions, *, bucket: str, max_periods: int
) -> Sequence[Row[Any]]:
    """The figures per week or month (UTC), empty periods included, from `since` (or the first feedback)
    to `until` (or now)."""
    step = cast(literal(f"1 {bucket}"), Interval)

    def period_of(moment: Any) -> ColumnElement[Any]:
        return func.date_trunc(bucket, func.timezone("UTC", moment))

    filtered = (
        select(
            FeedbackRow.kind,
            FeedbackRow.rating_scale,
            FeedbackRow.rating_value,
            FeedbackRow.customer_id,
            period_of(FeedbackRow.occurred_at).label("period_start"),
        )
        .where(*_conditions(where))
        .cte("filtered")
    )
    first: Any = (
        period_of(_moment(where.since))
        if where.since is not None
        else select(func.min(filtered.c.period_start)).scalar_subquery()
    )
    last = period_of(
        _moment(where.until) - cast(literal("1 microsecond"), Interval) if where.until is not None else func.now()
    )
    series = func.generate_series(first, last, step).label("period_start")
    periods = select(series).limit(max_periods + 1).cte("periods")
    statement = (
        select(
            func.timezone("UTC", periods.c.period_start).label("period_start"),
            # The month or week after December 9999 cannot be returned: the last period ends with year 9999.
            func.timezone("UTC", func.least(periods.c.period_start + step, _LAST_MOMENT)).label("period_end"),
            *_figures(filtered.c, assumptions),
        )
        .select_from(periods.outerjoin(filtered, filtered.c.period_start == periods.c.period_start))
        .group_by(periods.c.period_start)
        .order_by(periods.c.period_start)
    )
    return (await session.execute(statement)).all()


_LAST_MOMENT = cast(literal("9999-12-31 23:59:59.999999"), DateTime(timezone=False))


def _moment(value: datetime) -> ColumnElement[datetime]:
    return cast(literal(value), DateTime(timezone=True))
