"""The accountability counts from `commitment_rollup`, without reading a year of promises (issue 18 item 4).

A window [since, until) of due dates is cut into pieces: whole months and
whole days are read from the rollup (a few rows each), and only the edges
that do not fill a day, and today, are read from `commitment` itself through
its `due_at` index. Today is always read from the table: whether an unmet
promise is overdue or still open depends on `now`, and a rollup row is
either wholly before today (every unmet promise in it is overdue) or wholly
after it (every one is open).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    DateTime,
    Double,
    Integer,
    Select,
    Text,
    and_,
    bindparam,
    case,
    cast,
    func,
    literal,
    null,
    or_,
    select,
    text,
    union_all,
)

from services.commitments.models import (
    Commitment,
    CommitmentRollup,
    CommitmentRollupDepartment,
    CommitmentRollupOwner,
    RollupCounts,
)

UNMET = ("open", "due_soon", "overdue")
DAY = timedelta(days=1)
# Stands for a piece's start or end in its shape: the statement takes the moment as a parameter.
SOME_MOMENT = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Piece:
    """[start, end) of due dates read at one grain: "raw" (the table), "day" or "month" (the rollup)."""

    grain: str
    start: datetime | None
    end: datetime | None
    # Every promise of a rollup piece is due before today (unmet ones are overdue) or after it (open).
    before_today: bool = False
    # -1: rows taken away (the days of a month row outside the window).
    sign: int = 1

    def shape(self) -> Piece:
        """The piece without its moments (only whether it has them): what the statement is built from."""
        return replace(
            self,
            start=None if self.start is None else SOME_MOMENT,
            end=None if self.end is None else SOME_MOMENT,
        )


def floor_day(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, moment.day, tzinfo=UTC)


# The last instant there is: a day or month boundary past it (in the year 10000) stands for "after all of time".
END_OF_TIME = datetime.max.replace(tzinfo=UTC)


def ceil_day(moment: datetime) -> datetime:
    floor = floor_day(moment)
    if floor == moment:
        return floor
    return floor + DAY if floor < END_OF_TIME - DAY else END_OF_TIME


def floor_month(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def ceil_month(moment: datetime) -> datetime:
    floor = floor_month(moment)
    if floor == moment:
        return floor
    if floor.year == END_OF_TIME.year and floor.month == 12:
        return END_OF_TIME
    return datetime(floor.year + floor.month // 12, floor.month % 12 + 1, 1, tzinfo=UTC)


def _before(a: datetime | None, b: datetime | None) -> bool:
    """a < b, where a None start is the beginning of time and a None end its end."""
    return a is None or b is None or a < b


def _later(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or a < b else a


def _earlier(a: datetime | None, b: datetime) -> datetime:
    return b if a is None or a > b else a


def pieces(since: datetime | None, until: datetime | None, now: datetime) -> list[Piece]:
    """The window [since, until) cut into table pieces (edges, today) and rollup pieces (whole days and months)."""
    today, tomorrow = floor_day(now), floor_day(now) + DAY
    cut: list[Piece] = []
    before = (since, _earlier(until, today))
    if _before(*before):
        cut += _split(*before, before_today=True, today=today)
    during = (_later(since, today), _earlier(until, tomorrow))
    if during[0] < during[1]:
        cut.append(Piece("raw", *during))
    after = (_later(since, tomorrow), until)
    if _before(*after):
        cut += _split(*after, before_today=False, today=today)
    return cut


def _split(start: datetime | None, end: datetime | None, *, before_today: bool, today: datetime) -> list[Piece]:
    first_day = ceil_day(start) if start is not None else None
    last_day = floor_day(end) if end is not None else None
    if first_day is not None and last_day is not None and first_day >= last_day:
        return [Piece("raw", start, end)]
    cut: list[Piece] = []
    if start is not None and first_day is not None and start < first_day:
        cut.append(Piece("raw", start, first_day))
    first_month = ceil_month(first_day) if first_day is not None else None
    last_month = floor_month(last_day) if last_day is not None else None
    if first_month is not None and last_month is not None and first_month >= last_month:
        cut.append(Piece("day", first_day, last_day, before_today))
    else:
        if first_day is not None and first_month is not None and first_day < first_month:
            cut += _days(first_day, first_month, floor_month(first_day), before_today, today)
        cut.append(Piece("month", first_month, last_month, before_today))
        if last_month is not None and last_day is not None and last_month < last_day:
            cut += _days(last_month, last_day, last_month, before_today, today)
    if end is not None and last_day is not None and last_day < end:
        cut.append(Piece("raw", last_day, end))
    return cut


def _days(start: datetime, end: datetime, month: datetime, before_today: bool, today: datetime) -> list[Piece]:
    """The whole days [start, end) of one month: as day rows, or, when they are most of the month, as its month
    row less the days it has outside them (fewer rows to read). Only a month wholly on one side of today."""
    month_end = ceil_month(month + DAY)
    one_side = month_end <= today if before_today else month >= today + DAY
    if not one_side or (end - start) * 2 <= month_end - month:
        return [Piece("day", start, end, before_today)]
    less = [Piece("day", a, b, before_today, sign=-1) for a, b in ((month, start), (end, month_end)) if a < b]
    return [Piece("month", month, month_end, before_today), *less]


def _counted(condition: ColumnElement[bool]) -> ColumnElement[int]:
    return cast(condition, Integer)


def _start(index: int) -> BindParameter[datetime]:
    return bindparam(f"start_{index}", type_=DateTime(timezone=True))


def _end(index: int) -> BindParameter[datetime]:
    return bindparam(f"end_{index}", type_=DateTime(timezone=True))


def _filter(name: str) -> BindParameter[str]:
    return bindparam(f"filter_{name}", type_=Text)


def _from_table(index: int, piece: Piece, filters: Sequence[str]) -> Select[Any]:
    c = Commitment
    unmet = c.status.in_(UNMET)
    now = bindparam("now", type_=DateTime(timezone=True))
    conditions = [getattr(c, name) == _filter(name) for name in filters]
    if piece.start is not None:
        conditions.append(c.due_at >= _start(index))
    if piece.end is not None:
        conditions.append(c.due_at < _end(index))
    return select(
        c.department,
        c.owner_id,
        c.kind,
        _counted(c.status != "cancelled").label("due"),
        _counted(c.status == "met_on_time").label("met_on_time"),
        _counted(c.status == "met_late").label("met_late"),
        _counted(and_(unmet, c.due_at < now)).label("overdue"),
        _counted(and_(unmet, c.due_at >= now)).label("open"),
        _counted(c.status == "cancelled").label("cancelled"),
        case(
            (c.status == "met_late", cast(func.extract("epoch", c.completed_at - c.due_at), Double)),
            else_=literal(0.0, Double),
        ).label("lateness_seconds"),
        case((c.status != "cancelled", c.renegotiations), else_=literal(0)).label("renegotiations"),
        _counted(c.kept.is_(True)).label("kept"),
        _counted(c.kept.is_(False)).label("broken"),
        c.excuses.label("excuses"),
    ).where(*conditions)


def _from_rollup(
    index: int, piece: Piece, rollup: type[RollupCounts], grouped: Sequence[str], filters: Sequence[str]
) -> Select[Any]:
    r: Any = rollup
    conditions = [r.grain == piece.grain, *(getattr(r, name) == _filter(name) for name in filters)]
    if piece.start is not None:
        conditions.append(r.bucket >= _start(index))
    if piece.end is not None:
        conditions.append(r.bucket < _end(index))
    none = literal(0)
    unmet = r.unmet if piece.sign > 0 else -r.unmet

    def signed(column: Any) -> Any:
        return column if piece.sign > 0 else (-column).label(column.key)

    columns: list[Any] = [
        *(getattr(r, name) for name in grouped),
        *(signed(column) for column in (r.due, r.met_on_time, r.met_late)),
        (unmet if piece.before_today else none).label("overdue"),
        (none if piece.before_today else unmet).label("open"),
        *(signed(column) for column in (r.cancelled, r.lateness_seconds, r.renegotiations, r.kept, r.broken)),
        signed(r.excuses),
    ]
    return select(*columns).where(*conditions)


SUMMED = (
    "due",
    "met_on_time",
    "met_late",
    "overdue",
    "open",
    "cancelled",
    "renegotiations",
    "kept",
    "broken",
    "excuses",
)
COUNTED = (*SUMMED[:6], "lateness_seconds", *SUMMED[6:])
# The columns the figures are grouped by, each with its bit in `level` (GROUPING(department, owner_id, kind)).
GROUPED = {"department": 0b100, "owner_id": 0b010, "kind": 0b001}
ALL = 0b111
# The coarsest rollup first: each figure is read from the first rollup keyed by its grouping and the filters.
ROLLUPS: tuple[tuple[type[RollupCounts], frozenset[str]], ...] = (
    (CommitmentRollupDepartment, frozenset({"department", "kind", "customer_kind"})),
    (CommitmentRollupOwner, frozenset({"department", "owner_id", "customer_kind"})),
    (CommitmentRollup, frozenset({"department", "owner_id", "kind", "customer_kind"})),
)


def _rollup_for(grouping: str | None, filters: Sequence[str]) -> type[RollupCounts]:
    needed = {*filters, *([grouping] if grouping else [])}
    return next(rollup for rollup, columns in ROLLUPS if needed <= columns)


def _figures(
    rollup: type[RollupCounts],
    groupings: list[str | None],
    raw: Any,
    rollup_pieces: list[tuple[int, Piece]],
    filters: Sequence[str],
) -> Select[Any]:
    """The figures of `groupings` (None: the total) from the table's rows `raw` and `rollup`'s pieces."""
    grouped = [name for name in GROUPED if name in groupings]
    parts: list[Select[Any]] = [select(*(raw.c[name] for name in [*grouped, *COUNTED]))] if raw is not None else []
    parts += [_from_rollup(index, piece, rollup, grouped, filters) for index, piece in rollup_pieces]
    name = f"rows_{rollup.__name__}"
    rows = union_all(*parts).subquery(name) if len(parts) > 1 else parts[0].subquery(name)
    late = func.sum(rows.c.met_late)
    level: ColumnElement[int] = literal(sum(bit for column, bit in GROUPED.items() if column not in grouped))
    for column in grouped:
        level = level + func.grouping(rows.c[column]) * GROUPED[column]
    sets = ", ".join(f"({grouping or ''})" for grouping in groupings)
    return (
        select(
            *(rows.c[column] if column in grouped else null().cast(Text).label(column) for column in GROUPED),
            level.label("level"),
            *(func.coalesce(func.sum(rows.c[name]), 0).label(name) for name in SUMMED),
            (func.sum(rows.c.lateness_seconds) / func.nullif(late, 0) / 3600).label("mean_lateness_hours"),
        )
        .group_by(text(f"GROUPING SETS ({sets})"))
        .having(
            # A group none of the window's promises is in (a rollup row counted to zero, a month less its other
            # days) is not shown, as the full count would not show it; the total always is.
            or_(func.sum(rows.c.due) + func.sum(rows.c.cancelled) > 0, level == ALL)
        )
    )


def accountability_statement(
    *,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
    filters: dict[str, str],
) -> tuple[CompoundSelect[Any] | Select[Any], dict[str, Any]]:
    """Counts per department, per owner, per kind and in total for promises due in [since, until): the statement
    and its parameters.

    `filters` are equalities on department, owner_id and customer_kind. The
    rows are those of the full count over `commitment` (GROUPING SETS
    ((department), (owner_id), (kind), ()), `level` its GROUPING bits). The
    statement is built once per shape of the window (which pieces, which
    filters) and only its parameters change: building it costs milliseconds.
    """
    cut = pieces(since, until, now) or [Piece("raw", now, now)]  # an empty window: no promise
    statement = _statement(tuple(piece.shape() for piece in cut), tuple(sorted(filters)))
    params: dict[str, Any] = {"now": now, **{f"filter_{name}": value for name, value in filters.items()}}
    for index, piece in enumerate(cut):
        params |= {f"start_{index}": piece.start, f"end_{index}": piece.end}
    return statement, params


@functools.lru_cache(maxsize=256)
def _statement(cut: tuple[Piece, ...], filters: tuple[str, ...]) -> CompoundSelect[Any] | Select[Any]:
    """Each figure reads the coarsest rollup keyed by its grouping and the filters; the pieces read from the table
    are read once for all of them."""
    from_table = [_from_table(index, piece, filters) for index, piece in enumerate(cut) if piece.grain == "raw"]
    raw = (union_all(*from_table) if len(from_table) > 1 else from_table[0]).cte("raw") if from_table else None
    rollup_pieces = [(index, piece) for index, piece in enumerate(cut) if piece.grain != "raw"]
    by_rollup: dict[type[RollupCounts], list[str | None]] = {}
    for grouping in (*GROUPED, None):
        by_rollup.setdefault(_rollup_for(grouping, filters), []).append(grouping)
    figures = [_figures(rollup, groupings, raw, rollup_pieces, filters) for rollup, groupings in by_rollup.items()]
    return union_all(*figures) if len(figures) > 1 else figures[0]
