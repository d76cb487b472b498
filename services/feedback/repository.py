"""Every query of the feedback service. Repositories never commit."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, NamedTuple

import orjson
from sqlalchemy import (
    BigInteger,
    ColumnElement,
    DateTime,
    Float,
    Interval,
    Row,
    Select,
    SmallInteger,
    Subquery,
    Table,
    Text,
    and_,
    cast,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    union,
    union_all,
    update,
    values,
)
from sqlalchemy import column as sa_column
from sqlalchemy import table as sa_table
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.feedback.models import (
    DAY_FIGURES,
    KINDS,
    CustomerYearRow,
    FeedbackRow,
    ResolutionRow,
    StatusChangeRow,
    ThemeRow,
    day_count,
    theme_day_count,
    theme_day_total,
)
from shared.events import OutboxRecord
from shared.group_commit import GroupCommit
from shared.outbox import DEFAULT_MAX_EVENT_BYTES, OutboxValues, ensure_fits, max_event_bytes, outbox_values
from shared.pagination import keyset_page


@dataclass(frozen=True)
class FeedbackFilter:
    """What a list or the metrics are narrowed to; `since` inclusive, `until` exclusive (on `occurred_at`)."""

    customer_id: str | None = None
    customer_kind: str | None = None
    kind: str | None = None
    channel: str | None = None
    status: str | None = None
    product: str | None = None
    tag: str | None = None
    theme: str | None = None
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


def _moods(columns: Any) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    """Whether a feedback tells of an unhappy customer, and of a happy one."""
    kind, scale, value = columns.kind, columns.rating_scale, columns.rating_value
    nps, csat, ces = scale == "nps", scale == "csat", scale == "ces"
    unhappy = or_(kind == "complaint", and_(nps, value <= 6), and_(csat, value <= 2), and_(ces, value >= 5))
    happy = or_(kind == "compliment", and_(nps, value >= 9), and_(csat, value >= 4), and_(ces, value <= 2))
    return unhappy, happy


def _day_figures(feedback: Any) -> dict[str, ColumnElement[int]]:
    """What `feedback_day_count` counts, as aggregates over `feedback` rows (the table or a CTE of it)."""
    nps, csat, ces = (feedback.rating_scale == scale for scale in ("nps", "csat", "ces"))
    value = feedback.rating_value
    return {
        "feedback": func.count(),
        **{kind: func.count().filter(feedback.kind == kind) for kind in KINDS},
        "promoters": func.count().filter(and_(nps, value >= 9)),
        "passives": func.count().filter(and_(nps, value.between(7, 8))),
        "detractors": func.count().filter(and_(nps, value <= 6)),
        "csat_responses": func.count().filter(csat),
        "csat_satisfied": func.count().filter(and_(csat, value >= 4)),
        "ces_responses": func.count().filter(ces),
        "ces_effort": func.coalesce(func.sum(value).filter(ces), 0),
    }


def _theme_figures(feedback: Any) -> dict[str, ColumnElement[int]]:
    """What the theme rollups count, as aggregates over `feedback` rows (one per feedback and theme)."""
    return {
        "feedback": func.count(),
        **{kind: func.count().filter(feedback.kind == kind) for kind in KINDS},
        "negative": func.count().filter(feedback.sentiment_label == "negative"),
    }


def _upsert(rollup: Table, source: str, figures: dict[str, ColumnElement[int]]) -> str:
    """The CTE body that adds the rows of `source` (a CTE of the capture statement) to `rollup`."""
    keys = [column.name for column in rollup.c if column.name not in ("day", "stripe", *figures)]
    aggregates = ", ".join(_compiled(expression) for expression in figures.values())
    grouped = ", ".join(str(position) for position in (1, *range(3, len(keys) + 3)))
    return f"""
    INSERT INTO {rollup.name} AS counted (day, stripe, {", ".join(keys)}, {", ".join(figures)})
    SELECT CAST(timezone('UTC', occurred_at) AS date), (SELECT stripe FROM stripe), {", ".join(keys)}, {aggregates}
    FROM {source} GROUP BY {grouped} ORDER BY {grouped}
    ON CONFLICT (day, stripe, {", ".join(keys)})
    DO UPDATE SET {", ".join(f"{name} = counted.{name} + EXCLUDED.{name}" for name in figures)}"""


def _compiled(expression: ColumnElement[Any]) -> str:
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy's dialects are untyped
    return str(expression.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def _customer_years() -> str:
    """The CTE body that marks each captured day in `feedback_customer_year` (word of mouth).

    A customer's row whose days are all marked already is left alone: bits are only ever set, so a committed
    mark stays, and the row is neither locked (a second statement in flight for the same customer would wait
    for this one's commit) nor written again. Checked by a subquery per marked row, an index lookup whatever
    the plan's guess of how many rows a capture has (as an anti-join it could be planned as a scan)."""
    unhappy, happy = (_compiled(mood) for mood in _moods(_CAPTURED.c))
    day = "timezone('UTC', occurred_at)"
    day_bit = f"set_bit({_NO_DAYS}, CAST(extract(doy FROM {day}) AS int) - 1, 1)"
    return f"""
    INSERT INTO feedback_customer_year AS known (year, customer_kind, customer_id, unhappy_days, happy_days)
    SELECT * FROM (
        SELECT CAST(extract(year FROM {day}) AS int) AS year, customer_kind, customer_id,
            coalesce(bit_or({day_bit}) FILTER (WHERE {unhappy}), {_NO_DAYS}) AS unhappy_days,
            coalesce(bit_or({day_bit}) FILTER (WHERE {happy}), {_NO_DAYS}) AS happy_days
        FROM capture WHERE {unhappy} OR {happy} GROUP BY 1, 2, 3
    ) AS marked
    WHERE NOT coalesce((
        SELECT held.unhappy_days | marked.unhappy_days = held.unhappy_days
            AND held.happy_days | marked.happy_days = held.happy_days
        FROM feedback_customer_year AS held
        WHERE held.year = marked.year AND held.customer_kind = marked.customer_kind
            AND held.customer_id = marked.customer_id
    ), false)
    ORDER BY 1, 2, 3
    ON CONFLICT (year, customer_kind, customer_id)
    DO UPDATE SET unhappy_days = known.unhappy_days | EXCLUDED.unhappy_days,
        happy_days = known.happy_days | EXCLUDED.happy_days"""


_NO_DAYS = "CAST(B'0' AS bit(366))"
_CAPTURED = sa_table(
    "capture",
    *(sa_column(name) for name in ("kind", "rating_scale", "rating_value", "sentiment_label", "customer_id")),
)
_THEMED = sa_table("themed", *(sa_column(name) for name in ("kind", "sentiment_label")))

# New feedback and each one's event, in one statement: each parameter is one column, an array with a value
# per row (a row's tags and themes as JSON, since an array of arrays would be one flat array). One
# statement is atomic on its own: written alone, it needs no BEGIN and COMMIT. The same statement adds the
# feedback to the day rollups (the metrics and theme trends read those) and to `feedback_theme` (the list's
# theme filter), so they never differ from the feedback table. Each rollup's rows are upserted in key order:
# concurrent statements lock shared rows in the same order and cannot deadlock. A rollup key has 4 stripes,
# and a statement writes the first stripe no other open transaction writes (a try-lock per stripe, held to
# commit; the backend's pid modulo 4 when all 4 are taken): two statements in flight never share a row, so
# neither waits for the other's commit. Reads sum the stripes.
_INSERT = text(
    """
WITH stripe AS (
    SELECT coalesce((
        SELECT stripe FROM generate_series(0, 3) AS stripe
        WHERE pg_try_advisory_xact_lock(hashtext('feedback.rollup_stripe'), stripe) LIMIT 1
    ), pg_backend_pid() % 4) AS stripe
), capture AS (
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
), day_counted AS ("""
    + _upsert(day_count, "capture", _day_figures(_CAPTURED.c))
    + """
), themed AS (
    SELECT id, created_at, occurred_at, customer_kind, channel, product, kind, sentiment_label, theme
    FROM capture, jsonb_array_elements_text(CAST(capture.themes AS jsonb)) AS theme
), by_theme AS (
    INSERT INTO feedback_theme (theme, created_at, feedback_id) SELECT theme, created_at, id FROM themed
), theme_day_counted AS ("""
    + _upsert(theme_day_count, "themed", _theme_figures(_THEMED.c))
    + """
), theme_day_totalled AS ("""
    + _upsert(theme_day_total, "themed", _theme_figures(_THEMED.c))
    + """
), customer_years AS ("""
    + _customer_years()
    + """
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
    capture's). A session that has begun nothing, or no session at all (a request with nothing else to
    write opens none), makes the capture its request's only write: given the app's `group_captures`, it
    is then written in one statement with the captures of concurrent requests (shared/group_commit.py),
    committed when `insert` returns. Events above `max_bytes` (the session's `CF_MAX_EVENT_BYTES` when
    there is a session) are refused.
    """

    def __init__(
        self,
        session: AsyncSession | None,
        together: GroupCommit[Capture] | None = None,
        *,
        max_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if session is None and together is None:
            raise ValueError("captures without a session are written by group commit")
        self._session = session
        self._together = together
        self._max_bytes = max_event_bytes(session) if session is not None else max_bytes

    async def insert(self, feedback: NewFeedback, event: OutboxRecord) -> None:
        """Insert one feedback and its event; refuse (422) an event above the limit."""
        ensure_fits(event, self._max_bytes)
        session = self._session
        if session is not None and (self._together is None or session.in_transaction()):
            await session.execute(_INSERT, _columns([(feedback, event)]))
        else:
            assert self._together is not None  # no session without group commit (__init__)
            await self._together.write((feedback, event))


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
    """One page newest first, plus one row that says whether there is more: walked down the filter's index,
    or picked from a time window's rows (a theme's and a customer's walks are short; they keep theirs)."""
    if where.theme is None and where.customer_id is None and where.since is not None and where.until is not None:
        return (await session.scalars(_page_in_window(where, cursor=cursor, limit=limit))).all()
    statement = select(FeedbackRow).where(*_conditions(where))
    created_at, item_id = FeedbackRow.created_at, FeedbackRow.id
    if where.theme is not None:
        # Walk the theme's rows newest first (its own index), each joined to its feedback by id alone: with
        # `created_at` in the join too, PostgreSQL takes the two equalities as independent, expects almost no
        # rows, and plans a hash join over the whole table instead of stopping after a page.
        statement = statement.join(ThemeRow, ThemeRow.feedback_id == FeedbackRow.id).where(
            ThemeRow.theme == where.theme
        )
        created_at, item_id = ThemeRow.created_at, ThemeRow.feedback_id
    statement = keyset_page(statement, created_at=created_at, item_id=item_id, cursor=cursor, limit=limit)
    return (await session.scalars(statement)).all()


def _page_in_window(where: FeedbackFilter, *, cursor: str | None, limit: int) -> Select[FeedbackRow]:
    """A page of the feedback that occurred in `[since, until)`: the window's `(created_at, id)` read from
    `ix_feedback_occurred_at_created_at_id` (alone, unless other filters need the rows), the page picked from
    them, then only its rows read. It costs the window's size, however far back the window lies.

    Walking `(created_at, id)` newest first would read every feedback newer than the window before the page
    (PostgreSQL expects the window's rows spread over the whole walk, not after months of others).
    """
    # OFFSET 0 keeps the window a subquery of its own, read for its range rather than walked for the order.
    window = select(FeedbackRow.id, FeedbackRow.created_at).where(*_conditions(where)).offset(0).subquery("in_window")
    page = keyset_page(
        select(window), created_at=window.c.created_at, item_id=window.c.id, cursor=cursor, limit=limit
    ).subquery("page")
    return (
        select(FeedbackRow).join(page, page.c.id == FeedbackRow.id).order_by(page.c.created_at.desc(), page.c.id.desc())
    )


def _conditions(where: FeedbackFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    for column, value in (
        (FeedbackRow.customer_id, where.customer_id),
        (FeedbackRow.customer_kind, where.customer_kind),
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


@dataclass(frozen=True)
class _Span:
    """Where the figures of `[since, until)` are read: whole UTC days `[first_day, end_day)` (None: open) from a
    rollup when `whole_days`, and the moments around them (`edges`, each `[from, to)`) from the feedback table."""

    whole_days: bool
    first_day: date | None
    end_day: date | None
    edges: tuple[tuple[datetime | None, datetime | None], ...]


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), UTC)


def _span(where: FeedbackFilter) -> _Span:
    """Whole days from the rollup, the partial days at either end exactly from the feedback table."""
    everything = _Span(whole_days=False, first_day=None, end_day=None, edges=((where.since, where.until),))
    if where.customer_id is not None:
        # One customer's feedback is few rows, read through (customer_id, occurred_at); no rollup has customers.
        return everything
    first = end = None
    edges: list[tuple[datetime | None, datetime | None]] = []
    if where.since is not None:
        since = where.since.astimezone(UTC)
        first = since.date()
        if since != _midnight(first):
            if first == date.max:
                return everything
            first += timedelta(days=1)
            edges.append((since, _midnight(first)))
    if where.until is not None:
        until = where.until.astimezone(UTC)
        end = until.date()
        if until != _midnight(end):
            edges.append((_midnight(end), until))
    if first is not None and end is not None and first >= end:
        return everything
    return _Span(whole_days=True, first_day=first, end_day=end, edges=tuple(edges))


def _within(edges: Sequence[tuple[datetime | None, datetime | None]]) -> ColumnElement[bool]:
    ranges = []
    for start, end in edges:
        bounds = [FeedbackRow.occurred_at >= start] if start is not None else []
        if end is not None:
            bounds.append(FeedbackRow.occurred_at < end)
        if not bounds:
            return true()
        ranges.append(and_(*bounds))
    return or_(*ranges)


def _edge_conditions(where: FeedbackFilter, span: _Span) -> list[ColumnElement[bool]]:
    """The feedback table's rows of `span`'s edges that `where` selects."""
    return [*_conditions(replace(where, since=None, until=None)), _within(span.edges)]


def _rollup_conditions(rollup: Table, where: FeedbackFilter, span: _Span) -> list[ColumnElement[bool]]:
    """The rows of `rollup` in `span`'s whole days that `where` selects (its kind aside: kinds are columns)."""
    conditions: list[ColumnElement[bool]] = []
    for name in ("customer_kind", "channel", "product"):
        value = getattr(where, name)
        if value is not None:
            conditions.append(rollup.c[name] == value)
    if span.first_day is not None:
        conditions.append(rollup.c.day >= span.first_day)
    if span.end_day is not None:
        conditions.append(rollup.c.day < span.end_day)
    return conditions


def _period(bucket: str | None, moment: ColumnElement[Any]) -> list[ColumnElement[Any]]:
    """The UTC period (a timestamp without zone) `moment` falls in, as a column; none without `bucket`."""
    return [func.date_trunc(bucket, moment).label("period_start")] if bucket is not None else []


def _day_start(day: ColumnElement[Any]) -> ColumnElement[Any]:
    return cast(day, DateTime(timezone=False))


def _occurred_in_utc() -> ColumnElement[Any]:
    return func.timezone("UTC", FeedbackRow.occurred_at)


def _union(parts: list[Select[Any]], name: str) -> Subquery:
    return (union_all(*parts) if len(parts) > 1 else parts[0]).subquery(name)


def _summed(column: Any) -> ColumnElement[int]:
    return cast(func.coalesce(func.sum(column), 0), BigInteger)


def _counts(where: FeedbackFilter, bucket: str | None) -> Subquery:
    """`feedback_day_count`'s figures summed over what `where` selects (per period with `bucket`): whole days
    from the rollup, the edges' feedback counted alike."""
    span = _span(where)
    parts: list[Select[Any]] = []
    if span.whole_days:
        c = day_count.c
        parts.append(
            select(*_period(bucket, _day_start(c.day)), *(c[name] for name in DAY_FIGURES)).where(
                *_rollup_conditions(day_count, where, span)
            )
        )
    if span.edges:
        period = _period(bucket, _occurred_in_utc())
        figures = _day_figures(FeedbackRow)
        parts.append(
            select(*period, *(figures[name].label(name) for name in DAY_FIGURES))
            .where(*_edge_conditions(where, span))
            .group_by(*period)
        )
    counted = _union(parts, "counted")
    period_start = [counted.c.period_start] if bucket is not None else []
    summed = select(*period_start, *(_summed(counted.c[name]).label(name) for name in DAY_FIGURES))
    return summed.group_by(*period_start).subquery("counts")


def _customers(where: FeedbackFilter, bucket: str | None, *, most_periods: int = 0) -> Subquery:
    """Distinct unhappy and happy customers (word of mouth): a count of distinct customers cannot be added up
    from day counts. Over whole days without channel or product, from `feedback_customer_year` (one row a
    customer and year): without bucket, or per period of a range closed at both ends (its first `most_periods`
    periods); without bucket, checked against the feedback for a channel or product; else from the feedback
    table."""
    span = _span(where)
    if span.whole_days and where.channel is None and where.product is None:
        if bucket is None:
            return _customers_by_year(where, span)
        if span.first_day is not None and span.end_day is not None:
            return _customers_by_period(where, span, bucket, span.first_day, span.end_day, most_periods)
    if bucket is None and where.customer_id is None:
        return _customers_checked(where)
    unhappy, happy = _moods(FeedbackRow)
    period = _period(bucket, _occurred_in_utc())
    statement = select(
        *period,
        func.count(FeedbackRow.customer_id.distinct()).filter(unhappy).label("unhappy_customers"),
        func.count(FeedbackRow.customer_id.distinct()).filter(happy).label("happy_customers"),
    ).where(*_conditions(where), or_(unhappy, happy))
    return statement.group_by(*period).subquery("customers")


_DAYS_A_YEAR = 366


def _days_mask(first: int, last: int) -> ColumnElement[Any]:
    """The bits of the days `first` to `last` (0-based day of the year, both included)."""
    bits = "0" * first + "1" * (last - first + 1) + "0" * (_DAYS_A_YEAR - last - 1)
    return cast(literal(bits), BIT(_DAYS_A_YEAR))


def _marked_in(days: Any, span: _Span) -> ColumnElement[bool]:
    """Whether the day bits `days` (of `feedback_customer_year`) mark a day of `span`'s whole days."""
    year, none = CustomerYearRow.year, cast(literal("0"), BIT(_DAYS_A_YEAR))

    def marked(mask: ColumnElement[Any] | None) -> ColumnElement[bool]:
        within: ColumnElement[bool] = (days.op("&")(mask) if mask is not None else days) != none
        return within

    def day_of_year(day: date) -> int:
        return day.timetuple().tm_yday - 1

    first, last = span.first_day, span.end_day - timedelta(days=1) if span.end_day is not None else None
    if first is not None and last is not None and first.year == last.year:
        return and_(year == first.year, marked(_days_mask(day_of_year(first), day_of_year(last))))
    parts = []
    if first is not None:
        parts.append(and_(year == first.year, marked(_days_mask(day_of_year(first), _DAYS_A_YEAR - 1))))
    if last is not None:
        parts.append(and_(year == last.year, marked(_days_mask(0, day_of_year(last)))))
    between = [year > first.year] if first is not None else []
    if last is not None:
        between.append(year < last.year)
    parts.append(and_(*between, marked(None)) if between else marked(None))
    return or_(*parts)


def _customers_by_year(where: FeedbackFilter, span: _Span) -> Subquery:
    """Distinct unhappy and happy customers: whole days from `feedback_customer_year`, edges from feedback."""
    unhappy, happy = _moods(FeedbackRow)
    kind = [CustomerYearRow.customer_kind == where.customer_kind] if where.customer_kind is not None else []

    def distinct(days: Any, mood: ColumnElement[bool], name: str) -> Subquery:
        sets: list[Select[Any]] = [select(CustomerYearRow.customer_id).where(*kind, _marked_in(days, span))]
        if span.edges:
            sets.append(select(FeedbackRow.customer_id).where(*_edge_conditions(where, span), mood))
        customers = (union(*sets) if len(sets) > 1 else sets[0].distinct()).subquery()
        return select(func.count().label(name)).select_from(customers).subquery()

    return _both(
        distinct(CustomerYearRow.unhappy_days, unhappy, "unhappy_customers"),
        distinct(CustomerYearRow.happy_days, happy, "happy_customers"),
    )


def _both(unhappy_customers: Subquery, happy_customers: Subquery) -> Subquery:
    """The two one-row counts side by side. In FROM, not as scalar subqueries: the figures name each count
    twice, and PostgreSQL runs a scalar subquery once for each mention (reading the edges' feedback again)."""
    return (
        select(unhappy_customers.c.unhappy_customers, happy_customers.c.happy_customers)
        .select_from(unhappy_customers.join(happy_customers, true()))
        .subquery("customers")
    )


def _customers_checked(where: FeedbackFilter) -> Subquery:
    """Distinct unhappy and happy customers of a filter the customer-year rows do not hold (a channel, a
    product): the customers whose rows tell of such a day in the range's years are the candidates, each counted
    if one of its feedback that `where` selects tells the same (through `(customer_id, occurred_at)`, stopping
    at the first). Far fewer rows than the range's feedback: a customer is read until its first match."""
    kind = [CustomerYearRow.customer_kind == where.customer_kind] if where.customer_kind is not None else []
    years = [CustomerYearRow.year >= where.since.astimezone(UTC).year] if where.since is not None else []
    if where.until is not None:
        years.append(CustomerYearRow.year <= where.until.astimezone(UTC).year)
    unhappy, happy = _moods(FeedbackRow)
    none = cast(literal("0"), BIT(_DAYS_A_YEAR))

    def distinct(days: Any, mood: ColumnElement[bool], name: str) -> Subquery:
        candidates = select(CustomerYearRow.customer_id).where(*kind, *years, days != none).distinct().subquery()
        told = (
            select(FeedbackRow.id)
            .where(FeedbackRow.customer_id == candidates.c.customer_id, *_conditions(where), mood)
            .exists()
        )
        return select(func.count().label(name)).select_from(candidates).where(told).subquery()

    return _both(
        distinct(CustomerYearRow.unhappy_days, unhappy, "unhappy_customers"),
        distinct(CustomerYearRow.happy_days, happy, "happy_customers"),
    )


def _period_masks(bucket: str, first: date, end: date, most: int) -> list[tuple[datetime, int, str]]:
    """The first `most` weeks or months of the days `[first, end)`, each with the bits of its days in each year
    it spans (a week may span two): `(period_start, year, bits)`."""
    start = first - timedelta(days=first.weekday()) if bucket == "week" else first.replace(day=1)
    masks = []
    for _ in range(most):
        if start >= end:
            break
        try:
            after = start + timedelta(days=7) if bucket == "week" else _next_month(start)
        except (OverflowError, ValueError):  # past year 9999
            after = end
        low, high = max(start, first), min(after, end)
        while low < high:
            upto = min(high, date(low.year + 1, 1, 1)) if low.year < date.max.year else high
            first_bit, last_bit = (day.timetuple().tm_yday - 1 for day in (low, upto - timedelta(days=1)))
            bits = "0" * first_bit + "1" * (last_bit - first_bit + 1) + "0" * (_DAYS_A_YEAR - last_bit - 1)
            masks.append((datetime.combine(start, time()), low.year, bits))
            low = upto
        start = after
    return masks


def _next_month(day: date) -> date:
    return day.replace(year=day.year + day.month // 12, month=day.month % 12 + 1)


def _customers_by_period(
    where: FeedbackFilter, span: _Span, bucket: str, first: date, end: date, most: int
) -> Subquery:
    """Distinct unhappy and happy customers per period: each period's whole days from `feedback_customer_year`
    (the rows whose bits meet the period's days), the edges from feedback; a customer told once a period."""
    given = values(
        sa_column("period_start", DateTime()),
        sa_column("year", SmallInteger()),
        sa_column("bits", Text()),
        name="given",
    ).data(_period_masks(bucket, first, end, most))
    # Materialized: each period's bits are parsed once, not once for each customer-year row they meet.
    periods = (
        select(given.c.period_start, given.c.year, cast(given.c.bits, BIT(_DAYS_A_YEAR)).label("mask"))
        .cte("period_masks")
        .prefix_with("MATERIALIZED")
    )
    mask, none = periods.c.mask, cast(literal("0"), BIT(_DAYS_A_YEAR))
    kind = [CustomerYearRow.customer_kind == where.customer_kind] if where.customer_kind is not None else []
    unhappy, happy = _moods(FeedbackRow)
    told: list[Select[Any]] = []
    for mood, days, tells in (
        ("unhappy", CustomerYearRow.unhappy_days, unhappy),
        ("happy", CustomerYearRow.happy_days, happy),
    ):
        told.append(
            select(periods.c.period_start, CustomerYearRow.customer_id, literal(mood).label("mood"))
            .select_from(CustomerYearRow)
            .join(periods, periods.c.year == CustomerYearRow.year)
            .where(*kind, days.op("&")(mask) != none)
        )
        if span.edges:
            told.append(
                select(*_period(bucket, _occurred_in_utc()), FeedbackRow.customer_id, literal(mood)).where(
                    *_edge_conditions(where, span), tells
                )
            )
    customers = union(*told).subquery("told")
    return (
        select(
            customers.c.period_start,
            func.count().filter(customers.c.mood == "unhappy").label("unhappy_customers"),
            func.count().filter(customers.c.mood == "happy").label("happy_customers"),
        )
        .group_by(customers.c.period_start)
        .subquery("customers")
    )


def _figures(counts: Any, customers: Any, assumptions: Assumptions) -> list[ColumnElement[Any]]:
    """The metric figures from summed counts (`_counts`) and customers (`_customers`); either may be null."""

    def of(column: Any) -> ColumnElement[int]:
        return func.coalesce(column, 0)

    def ratio(numerator: ColumnElement[Any], denominator: ColumnElement[Any], scale_by: float = 1.0) -> Any:
        return cast(numerator * literal(scale_by) / func.nullif(denominator, 0), Float)

    complaints, compliments = of(counts.complaint), of(counts.compliment)
    promoters, passives, detractors = of(counts.promoters), of(counts.passives), of(counts.detractors)
    nps_responses = promoters + passives + detractors
    csat_responses, ces_responses = of(counts.csat_responses), of(counts.ces_responses)
    unhappy_customers, happy_customers = of(customers.unhappy_customers), of(customers.happy_customers)
    return [
        of(counts.feedback).label("total"),
        *(of(counts[name]).label(f"kind_{name}") for name in KINDS),
        promoters.label("promoters"),
        passives.label("passives"),
        detractors.label("detractors"),
        nps_responses.label("nps_responses"),
        ratio(promoters - detractors, nps_responses, 100.0).label("nps_score"),
        csat_responses.label("csat_responses"),
        ratio(of(counts.csat_satisfied), csat_responses, 100.0).label("csat_score"),
        ces_responses.label("ces_responses"),
        ratio(of(counts.ces_effort), ces_responses).label("ces_average"),
        ratio(compliments, complaints).label("compliments_per_complaint"),
        cast(complaints / literal(assumptions.complaining_share), Float).label("silent_dissatisfied"),
        unhappy_customers.label("unhappy_customers"),
        happy_customers.label("happy_customers"),
        cast(unhappy_customers * literal(assumptions.unhappy_tell), Float).label("people_told_bad"),
        cast(happy_customers * literal(assumptions.happy_tell), Float).label("people_told_good"),
    ]


async def figures(session: AsyncSession, where: FeedbackFilter, assumptions: Assumptions) -> Row[Any]:
    """The figures over every feedback `where` selects: whole days from the rollup, edges from feedback."""
    counts, customers = _counts(where, None), _customers(where, None)
    statement = select(*_figures(counts.c, customers.c, assumptions)).select_from(counts.join(customers, true()))
    return (await session.execute(statement)).one()


async def figures_per_period(
    session: AsyncSession, where: FeedbackFilter, assumptions: Assumptions, *, bucket: str, max_periods: int
) -> Sequence[Row[Any]]:
    """The figures per week or month (UTC), empty periods included, from `since` (or the first feedback)
    to `until` (or now)."""
    step = cast(literal(f"1 {bucket}"), Interval)
    counts, customers = _counts(where, bucket), _customers(where, bucket, most_periods=max_periods + 1)

    def period_of(moment: Any) -> ColumnElement[Any]:
        return func.date_trunc(bucket, func.timezone("UTC", moment))

    first: Any = (
        period_of(_moment(where.since))
        if where.since is not None
        else select(func.min(counts.c.period_start)).where(counts.c.feedback > 0).scalar_subquery()
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
            *_figures(counts.c, customers.c, assumptions),
        )
        .select_from(
            periods.outerjoin(counts, counts.c.period_start == periods.c.period_start).outerjoin(
                customers, customers.c.period_start == periods.c.period_start
            )
        )
        .order_by(periods.c.period_start)
    )
    return (await session.execute(statement)).all()


def _theme_rollup(where: FeedbackFilter) -> Table:
    """The smallest theme rollup that can answer `where`."""
    return theme_day_count if where.channel is not None or where.product is not None else theme_day_total


def _themed(where: FeedbackFilter, bucket: str | None) -> Subquery:
    """Feedback of `where` counted per theme: rows of (period_start if `bucket`, theme, count, complaints,
    negative); with a `kind`, count is that kind's (and `negative` is not narrowed to it)."""
    span = _span(where)
    parts: list[Select[Any]] = []
    if span.whole_days:
        rollup = _theme_rollup(where)
        c = rollup.c
        complaints: Any = c.complaint if where.kind in (None, "complaint") else literal(0)
        parts.append(
            select(
                *_period(bucket, _day_start(c.day)),
                c.theme,
                (c[where.kind] if where.kind is not None else c.feedback).label("count"),
                complaints.label("complaints"),
                c.negative,
            ).where(*_rollup_conditions(rollup, where, span))
        )
    if span.edges:
        themes = func.unnest(FeedbackRow.themes).table_valued("theme").render_derived("themes")
        period = _period(bucket, _occurred_in_utc())
        figures = _theme_figures(FeedbackRow)
        parts.append(
            select(
                *period,
                themes.c.theme,
                figures["feedback"].label("count"),
                figures["complaint"].label("complaints"),
                figures["negative"].label("negative"),
            )
            .select_from(FeedbackRow)
            .join(themes, true())
            .where(*_edge_conditions(where, span))
            .group_by(*period, themes.c.theme)
        )
    return _union(parts, "themed")


async def theme_figures(session: AsyncSession, where: FeedbackFilter) -> Sequence[tuple[str, int, int, int]]:
    """Per theme of the feedback `where` selects: how many, complaints, negative; most feedback first."""
    themed = _themed(where, None)
    count = _summed(themed.c.count).label("count")
    statement = (
        select(themed.c.theme, count, _summed(themed.c.complaints), _summed(themed.c.negative))
        .group_by(themed.c.theme)
        .having(func.sum(themed.c.count) > 0)
        .order_by(count.desc(), themed.c.theme)
    )
    return [
        (theme, int(count), int(complaints), int(negative))
        for theme, count, complaints, negative in await session.execute(statement)
    ]


async def first_themed_day(session: AsyncSession, where: FeedbackFilter) -> date | None:
    """The first UTC day with themed feedback `where` selects (its time range aside)."""
    rollup = _theme_rollup(where)
    figure = rollup.c[where.kind] if where.kind is not None else rollup.c.feedback
    conditions = _rollup_conditions(rollup, where, _Span(True, None, None, ()))
    day: date | None = (
        await session.execute(select(func.min(rollup.c.day)).where(*conditions, figure > 0))
    ).scalar_one()
    return day


async def theme_series(
    session: AsyncSession, where: FeedbackFilter, *, bucket: str
) -> Sequence[tuple[str, datetime, int, int]]:
    """Per theme and UTC period (a naive UTC timestamp) with feedback: how many, complaints."""
    themed = _themed(where, bucket)
    statement = (
        select(themed.c.theme, themed.c.period_start, _summed(themed.c.count), _summed(themed.c.complaints))
        .group_by(themed.c.theme, themed.c.period_start)
        .having(func.sum(themed.c.count) > 0)
    )
    return [
        (theme, start, int(count), int(complaints))
        for theme, start, count, complaints in await session.execute(statement)
    ]


_LAST_MOMENT = cast(literal("9999-12-31 23:59:59.999999"), DateTime(timezone=False))


def _moment(value: datetime) -> ColumnElement[datetime]:
    return cast(literal(value), DateTime(timezone=True))
