"""Every query of the customers service. Repositories never commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple

import orjson
from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Interval,
    Row,
    Text,
    TextClause,
    and_,
    any_,
    bindparam,
    case,
    func,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession

from services.customers.models import COUNTED_ITEM, BankQuestion, Customer, CustomerItem
from shared.errors import field_error
from shared.pagination import decode_cursor
from shared.repository import Repository

if TYPE_CHECKING:
    from services.customers.timeline import AddedQuestion, Entry, ItemState

customers = Repository(Customer)


async def get_customer(session: AsyncSession, customer_id: str, *, for_update: bool = False) -> Customer | None:
    statement = select(Customer).where(Customer.customer_id == customer_id)
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    found: Customer | None = await session.scalar(statement)
    return found


async def insert_customer(session: AsyncSession, customer: Customer) -> bool:
    """Add the customer unless an event made it meanwhile; whether it was added."""
    values = {column.key: getattr(customer, column.key) for column in Customer.__table__.columns}
    values = {key: value for key, value in values.items() if value is not None}
    added = await session.execute(
        insert(Customer).values(**values).on_conflict_do_nothing(index_elements=["customer_id"]).returning(Customer.id)
    )
    return added.scalar() is not None


async def list_customers(
    session: AsyncSession,
    *,
    key_customer: bool | None,
    customer_kind: str | None,
    health_band: str | None = None,
    silent_before: datetime | None = None,
    survey_due: bool | None = None,
    cursor: str | None,
    limit: int,
) -> Sequence[Customer]:
    statement = select(Customer)
    if key_customer is not None:
        statement = statement.where(Customer.key_customer == key_customer)
    if customer_kind is not None:
        statement = statement.where(Customer.customer_kind == customer_kind)
    if survey_due is not None:
        statement = statement.where(Customer.survey_due == survey_due)
    if health_band is not None:
        statement = statement.where(Customer.health_band == health_band)
    if silent_before is not None:
        statement = statement.where(silent_since <= silent_before)
    return await customers.page(session, statement, cursor=cursor, limit=limit)


_COUNTS: tuple[ColumnElement[int], ...] = (
    func.count().filter(CustomerItem.item_type == "feedback"),
    func.count().filter(CustomerItem.open_complaint),
    func.count().filter(CustomerItem.open_promise),
    func.count().filter(CustomerItem.broken_promise),
    func.count().filter(CustomerItem.unconfirmed_expectation),
    func.count().filter(CustomerItem.capability_gap),
)
COUNT_NAMES = (
    "feedback",
    "open_complaints",
    "open_promises",
    "broken_promises",
    "unconfirmed_expectations",
    "capability_gaps",
)


# The customers' ids of a statement built once, as one array (`= ANY`): one statement text whatever their number.
_IDS = bindparam("ids", type_=ARRAY(Text))
_COUNTS_OF = (
    select(CustomerItem.customer_id, *_COUNTS)
    .where(CustomerItem.customer_id == any_(_IDS))
    .group_by(CustomerItem.customer_id)
)


async def counts_of(session: AsyncSession, customer_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """The counts of each customer (only those with something counted)."""
    rows = await session.execute(_COUNTS_OF, {"ids": list(customer_ids)})
    return {row[0]: dict(zip(COUNT_NAMES, row[1:], strict=True)) for row in rows}


# A page of a customer's timeline, newest first after a cursor: fixed statements (the service's busiest read
# builds and compiles nothing per request), each on its index (ix_timeline_entry_customer_id_time_id, or with
# the type). The first page is the one after the end of time. The links come as the JSON text they are
# stored as (the page puts them in its body as they are).
_TIMELINE_PAGE = """
    SELECT id, event_id, type, time, subject, summary, CAST(links AS text) AS links
    FROM timeline_entry
    WHERE customer_id = :customer_id {type_filter}AND (time, id) < (:before_time, :before_id)
    ORDER BY time DESC, id DESC
    LIMIT :rows
"""
_TIMELINE_PAGES = {
    False: text(_TIMELINE_PAGE.format(type_filter="")),
    True: text(_TIMELINE_PAGE.format(type_filter="AND type = :type ")),
}
_END_OF_TIME = (datetime.max.replace(tzinfo=UTC), 2**63 - 1)


def timeline_page_statement(
    customer_id: str, event_type: str | None, cursor: str | None, limit: int
) -> tuple[TextClause, dict[str, Any]]:
    """The statement and parameters of a timeline page: the first `limit + 1` entries after `cursor`."""
    before = _END_OF_TIME
    if cursor is not None:
        at, entry_id = decode_cursor(cursor)
        try:
            before = (at, _entry_id(entry_id))
        except ValueError as exc:
            raise field_error(["query", "cursor"], "is not a cursor this API returned") from exc
    parameters: dict[str, Any] = {
        "customer_id": customer_id,
        "before_time": before[0],
        "before_id": before[1],
        "rows": limit + 1,
    }
    if event_type is not None:
        parameters["type"] = event_type
    return _TIMELINE_PAGES[event_type is not None], parameters


async def timeline(
    session: AsyncSession, *, customer_id: str, event_type: str | None, cursor: str | None, limit: int
) -> Sequence[Row[Any]]:
    """The customer's entries, newest first by the event's `time`, after `cursor`, `limit + 1` at most."""
    statement, parameters = timeline_page_statement(customer_id, event_type, cursor, limit)
    rows: Sequence[Row[Any]] = (await session.execute(statement, parameters)).all()
    return rows


def _entry_id(text: str) -> int:
    """A timeline entry's id from a cursor: a ValueError (so a 422) unless it is a `bigint`."""
    value = int(text)
    if not 0 < value < 2**63:
        raise ValueError(f"{value} is no timeline entry id")
    return value


# --- health -------------------------------------------------------------------------------------

# A customer is silent since its last contact, or since it was first seen (ix_customer_silent_since).
silent_since = func.coalesce(Customer.last_contact_at, Customer.first_seen_at)
SCALES = ("nps", "csat", "ces")
_CUSTOMERS_TO_JUDGE = (
    select(Customer)
    .where(Customer.customer_id == any_(_IDS))
    .order_by(Customer.customer_id)
    .with_for_update()
    .execution_options(populate_existing=True)
)


async def customers_to_judge(session: AsyncSession, customer_ids: Sequence[str]) -> Sequence[Customer]:
    """The customers, locked in customer order, as they are now."""
    rows = await session.scalars(_CUSTOMERS_TO_JUDGE, {"ids": list(customer_ids)})
    return rows.all()


class HealthInputs(NamedTuple):
    """What a customer's health is judged from, and the health stored now."""

    customer_id: str
    nps_score: int | None
    csat_score: int | None
    ces_score: int | None
    silent_since: datetime
    health_score: int
    health_band: str
    health_reasons: list[dict[str, Any]]
    open_complaints: int
    broken_promises: int
    unconfirmed_expectations: int
    capability_gaps: int


# What counts against each customer's health, per customer of `:ids` (only those with something counted): read
# from the partial index that holds just those items (ix_customer_item_counted: an index-only scan where the
# pages are all visible), not every item a customer ever had. `health_counts` and `_HEALTH_INPUTS` both use it.
_COUNTED = f"""
    SELECT customer_id,
        count(*) FILTER (WHERE open_complaint) AS complaints,
        count(*) FILTER (WHERE broken_promise AND broken_at >= :broken_since) AS broken,
        count(*) FILTER (WHERE unconfirmed_expectation) AS unconfirmed,
        count(*) FILTER (WHERE capability_gap) AS gaps
    FROM customer_item
    WHERE customer_id = ANY(CAST(:ids AS text[])) AND ({COUNTED_ITEM})
    GROUP BY customer_id
"""
_HEALTH_COUNTS_OF = text(_COUNTED)
# What a customer's health is judged from, for the customers of a batch: built once (the consumer runs it for
# every batch).
_HEALTH_INPUTS = text(
    f"""
    SELECT customer.customer_id, customer.nps_score, customer.csat_score, customer.ces_score,
        coalesce(customer.last_contact_at, customer.first_seen_at) AS silent_since,
        customer.health_score, customer.health_band, customer.health_reasons,
        coalesce(counted.complaints, 0), coalesce(counted.broken, 0),
        coalesce(counted.unconfirmed, 0), coalesce(counted.gaps, 0)
    FROM customer LEFT JOIN ({_COUNTED}) AS counted ON counted.customer_id = customer.customer_id
    WHERE customer.customer_id = ANY(CAST(:ids AS text[]))
    ORDER BY customer.customer_id
    FOR UPDATE OF customer
    """
).columns(health_reasons=JSONB)


async def health_inputs(
    session: AsyncSession, customer_ids: Sequence[str], *, broken_since: datetime
) -> list[HealthInputs]:
    """Each customer's health factors and stored health, locked in customer order: one statement, no ORM
    objects (the consumer judges every customer of a batch; few of them change)."""
    rows = await session.execute(_HEALTH_INPUTS, {"ids": list(customer_ids), "broken_since": broken_since})
    return [HealthInputs(*row) for row in rows]


class JudgedHealth(NamedTuple):
    customer_id: str
    score: int
    band: str
    reasons: list[dict[str, Any]]


_SAVE_HEALTH = text(
    """
    UPDATE customer SET health_score = judged.score, health_band = judged.band,
        health_reasons = judged.reasons, health_at = :at
    FROM unnest(CAST(:customer_ids AS text[]), CAST(:scores AS int[]), CAST(:bands AS text[]),
        CAST(:reasons AS jsonb[])) AS judged(customer_id, score, band, reasons)
    WHERE customer.customer_id = judged.customer_id
    """
)


async def save_health(session: AsyncSession, judged: Sequence[JudgedHealth], *, at: datetime) -> None:
    """Store the customers' new health in one statement."""
    await session.execute(
        _SAVE_HEALTH,
        {
            "customer_ids": [j.customer_id for j in judged],
            "scores": [j.score for j in judged],
            "bands": [j.band for j in judged],
            "reasons": [orjson.dumps(j.reasons).decode() for j in judged],
            "at": at,
        },
    )


async def health_counts(
    session: AsyncSession, customer_ids: Sequence[str], *, broken_since: datetime
) -> dict[str, tuple[int, int, int, int]]:
    """Open complaints, promises broken since `broken_since`, unconfirmed expectations and gaps of each customer."""
    rows = await session.execute(_HEALTH_COUNTS_OF, {"ids": list(customer_ids), "broken_since": broken_since})
    return {row[0]: (row[1], row[2], row[3], row[4]) for row in rows}


async def silent_unjudged(
    session: AsyncSession, *, silent_before: datetime, judged_before: datetime, limit: int
) -> list[str]:
    """Customers silent since before `silent_before` whose health, judged before `judged_before`, does not
    count the silence yet (locked; those another transaction holds are left to it)."""
    rows = await session.scalars(
        select(Customer.customer_id)
        .where(
            silent_since < silent_before,
            ~Customer.health_reasons.contains([{"factor": "silence"}]),
            Customer.health_at.is_(None) | (Customer.health_at < judged_before),
        )
        .order_by(Customer.customer_id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list(rows.all())


# --- the consumer's writes: one statement for a whole batch -------------------------------------

# The customers of the batch first, one row each in customer order: the upsert locks every one that exists
# (also those its WHERE leaves as they are), so two batches never wait on each other in a cycle and two
# replicas consuming different topics judge one customer one after the other. Their latest rating on each
# scale (by when it was given) comes along. Only then (`seen` counted to its end first) the timeline entries
# and the latest state of each item, in key order.
_RECORD_BATCH = text(
    """
    WITH seen AS (
        INSERT INTO customer (
            customer_id, customer_kind, first_seen_at, last_contact_at, last_survey_at,
            nps_score, nps_at, csat_score, csat_at, ces_score, ces_at
        )
        SELECT * FROM unnest(
            CAST(:customer_ids AS text[]), CAST(:kinds AS text[]), CAST(:first_seen AS timestamptz[]),
            CAST(:contacts AS timestamptz[]), CAST(:surveys AS timestamptz[]),
            CAST(:nps_scores AS int[]), CAST(:nps_ats AS timestamptz[]),
            CAST(:csat_scores AS int[]), CAST(:csat_ats AS timestamptz[]),
            CAST(:ces_scores AS int[]), CAST(:ces_ats AS timestamptz[])
        ) ORDER BY 1
        ON CONFLICT (customer_id) DO UPDATE SET
            last_contact_at = greatest(customer.last_contact_at, excluded.last_contact_at),
            last_survey_at = greatest(customer.last_survey_at, excluded.last_survey_at),
            -- A survey response after the last survey came due answers it.
            survey_due = customer.survey_due
                AND coalesce(excluded.last_survey_at <= customer.last_survey_due_at, true),
            nps_score = CASE WHEN excluded.nps_at >= coalesce(customer.nps_at, '-infinity')
                THEN excluded.nps_score ELSE customer.nps_score END,
            nps_at = greatest(customer.nps_at, excluded.nps_at),
            csat_score = CASE WHEN excluded.csat_at >= coalesce(customer.csat_at, '-infinity')
                THEN excluded.csat_score ELSE customer.csat_score END,
            csat_at = greatest(customer.csat_at, excluded.csat_at),
            ces_score = CASE WHEN excluded.ces_at >= coalesce(customer.ces_at, '-infinity')
                THEN excluded.ces_score ELSE customer.ces_score END,
            ces_at = greatest(customer.ces_at, excluded.ces_at)
        WHERE excluded.last_contact_at IS NOT NULL OR excluded.last_survey_at IS NOT NULL
            OR excluded.nps_at IS NOT NULL OR excluded.csat_at IS NOT NULL OR excluded.ces_at IS NOT NULL
        RETURNING 1
    ),
    locked AS MATERIALIZED (SELECT count(*) AS customers FROM seen),
    entries AS (
        INSERT INTO timeline_entry (customer_id, event_id, type, time, subject, summary, links)
        SELECT entry.customer_id, entry.event_id, entry.type, entry.time, entry.subject, entry.summary, entry.links
        FROM locked, unnest(
            CAST(:entry_customer_ids AS text[]), CAST(:event_ids AS text[]), CAST(:types AS text[]),
            CAST(:times AS timestamptz[]), CAST(:subjects AS text[]), CAST(:summaries AS text[]),
            CAST(:links AS jsonb[])
        ) WITH ORDINALITY AS entry(customer_id, event_id, type, time, subject, summary, links, position)
        ORDER BY entry.position
    ),
    items AS (
        INSERT INTO customer_item AS item (
            item_type, item_id, customer_id, open_complaint, open_promise, broken_promise,
            unconfirmed_expectation, capability_gap, broken_at, updated_at, detail
        )
        SELECT state.* FROM locked, unnest(
            CAST(:item_types AS text[]), CAST(:item_ids AS text[]), CAST(:item_customer_ids AS text[]),
            CAST(:open_complaints AS boolean[]), CAST(:open_promises AS boolean[]),
            CAST(:broken_promises AS boolean[]), CAST(:unconfirmed AS boolean[]), CAST(:gaps AS boolean[]),
            CAST(:broken_at AS timestamptz[]), CAST(:updated_at AS timestamptz[]), CAST(:details AS jsonb[])
        ) AS state
        ORDER BY 1, 2
        ON CONFLICT (item_type, item_id) DO UPDATE SET
            open_complaint = excluded.open_complaint,
            open_promise = excluded.open_promise,
            broken_promise = excluded.broken_promise,
            unconfirmed_expectation = excluded.unconfirmed_expectation,
            capability_gap = excluded.capability_gap,
            broken_at = coalesce(item.broken_at, excluded.broken_at),
            updated_at = excluded.updated_at,
            detail = excluded.detail
    )
    SELECT customers FROM locked
    """
)


async def record_batch(
    session: AsyncSession,
    entries: Sequence[Entry],
    *,
    items: Sequence[ItemState],
    contacts: dict[str, datetime],
    surveys: dict[str, datetime],
    scores: dict[str, dict[str, tuple[int, datetime]]],
) -> None:
    """In one statement: make each customer first seen in `entries` (a customer exists from its first event on)
    and move its last contact, survey and latest ratings (`scores`: by scale, each customer's latest value and
    when it was given) forward, locking them; add the timeline entries; store the latest state of each item (a
    promise keeps the moment it was first seen broken)."""
    first: dict[str, Entry] = {}
    for entry in entries:
        if entry.customer_id not in first or entry.time < first[entry.customer_id].time:
            first[entry.customer_id] = entry
    ids = sorted(first)
    parameters: dict[str, Any] = {
        "customer_ids": ids,
        "kinds": [first[c].customer_kind for c in ids],
        "first_seen": [first[c].time for c in ids],
        "contacts": [contacts.get(c) for c in ids],
        "surveys": [surveys.get(c) for c in ids],
        "entry_customer_ids": [e.customer_id for e in entries],
        "event_ids": [e.event_id for e in entries],
        "types": [e.type for e in entries],
        "times": [e.time for e in entries],
        "subjects": [e.subject for e in entries],
        "summaries": [e.summary for e in entries],
        "links": [orjson.dumps(e.links).decode() for e in entries],
        "item_types": [i.item_type for i in items],
        "item_ids": [i.item_id for i in items],
        "item_customer_ids": [i.customer_id for i in items],
        "open_complaints": [i.open_complaint for i in items],
        "open_promises": [i.open_promise for i in items],
        "broken_promises": [i.broken_promise for i in items],
        "unconfirmed": [i.unconfirmed_expectation for i in items],
        "gaps": [i.capability_gap for i in items],
        "broken_at": [i.updated_at if i.broken_promise else None for i in items],
        "updated_at": [i.updated_at for i in items],
        "details": [None if i.detail is None else orjson.dumps(i.detail).decode() for i in items],
    }
    for scale in SCALES:
        latest = scores.get(scale, {})
        given = [latest.get(c) for c in ids]
        parameters[f"{scale}_scores"] = [None if g is None else g[0] for g in given]
        parameters[f"{scale}_ats"] = [None if g is None else g[1] for g in given]
    await session.execute(_RECORD_BATCH, parameters)


async def add_questions(session: AsyncSession, questions: Sequence[AddedQuestion]) -> None:
    """Keep the bank's new questions; one seen again (a redelivery) is left as it is."""
    rows = [
        {
            "id": q.id,
            "text": q.text,
            "topic": q.topic,
            "topic_key": q.topic_key,
            "open_ended": q.open_ended,
            "created_at": q.created_at,
        }
        for q in sorted(questions, key=lambda q: q.id)
    ]
    await session.execute(insert(BankQuestion).values(rows).on_conflict_do_nothing(index_elements=["id"]))


# --- the meeting brief ---------------------------------------------------------------------------


async def brief_items(session: AsyncSession, customer_id: str, *, limit: int) -> Sequence[CustomerItem]:
    """The customer's unconfirmed expectations, capability gaps, open and broken promises: newest first,
    at most `limit` of each kind."""
    kinds = (
        CustomerItem.unconfirmed_expectation,
        CustomerItem.capability_gap,
        CustomerItem.open_promise,
        CustomerItem.broken_promise,
    )
    found: dict[tuple[str, str], CustomerItem] = {}
    for flag in kinds:
        rows = await session.scalars(
            select(CustomerItem)
            .where(CustomerItem.customer_id == customer_id, flag)
            .order_by(CustomerItem.updated_at.desc(), CustomerItem.item_id)
            .limit(limit)
        )
        for row in rows:
            found[(row.item_type, row.item_id)] = row
    return list(found.values())


_COMPLAINT_THEMES = text(
    """
    SELECT theme, count(*) AS complaints, max((detail->>'occurred_at')::timestamptz) AS last_at
    FROM customer_item, jsonb_array_elements_text(
        CASE WHEN jsonb_typeof(detail->'themes') = 'array' THEN detail->'themes' ELSE '[]'::jsonb END
    ) AS theme
    WHERE customer_id = :customer_id AND item_type = 'feedback' AND detail->>'kind' = 'complaint'
      AND (detail->>'occurred_at')::timestamptz >= :since
    GROUP BY theme
    ORDER BY complaints DESC, last_at DESC, theme
    """
)
_LATEST_SCORES = text(
    """
    SELECT DISTINCT ON (detail->'rating'->>'scale')
        item_id, detail->'rating'->>'scale' AS scale, detail->'rating'->>'value' AS value,
        (detail->>'occurred_at')::timestamptz AS at
    FROM customer_item
    WHERE customer_id = :customer_id AND item_type = 'feedback' AND jsonb_typeof(detail->'rating') = 'object'
    ORDER BY detail->'rating'->>'scale', (detail->>'occurred_at')::timestamptz DESC NULLS LAST, item_id
    """
)


async def complaint_themes(session: AsyncSession, customer_id: str, *, since: datetime) -> Sequence[Any]:
    """Each theme of the customer's complaints made since `since`: how many, and the latest."""
    return (await session.execute(_COMPLAINT_THEMES, {"customer_id": customer_id, "since": since})).all()


async def latest_scores(session: AsyncSession, customer_id: str) -> Sequence[Any]:
    """The customer's latest rating on each scale (NPS, CSAT, CES)."""
    return (await session.execute(_LATEST_SCORES, {"customer_id": customer_id})).all()


async def open_questions_on(session: AsyncSession, topic_keys: Sequence[str], *, limit: int) -> Sequence[BankQuestion]:
    """Open-ended questions of the bank whose topic is one of `topic_keys`, oldest first."""
    if not topic_keys:
        return []
    rows = await session.scalars(
        select(BankQuestion)
        .where(BankQuestion.open_ended, BankQuestion.topic_key.in_(topic_keys))
        .order_by(BankQuestion.created_at, BankQuestion.id)
        .limit(limit)
    )
    return rows.all()


# --- the survey cadence (services/customers/survey.py) ----------------------------------------------

_INTERVAL = bindparam("interval", type_=Interval)
_AFTER_A_SURVEY = bindparam("after_a_survey", type_=Interval)
SURVEY_FRESH = and_(Customer.last_survey_at.is_(None), Customer.last_survey_due_at.is_(None))
SURVEY_BASE = func.coalesce(func.greatest(Customer.last_survey_at, Customer.last_survey_due_at), Customer.first_seen_at)
SURVEY_MOMENT = SURVEY_BASE + case((SURVEY_FRESH, _INTERVAL), else_=_AFTER_A_SURVEY)


def _fire_surveys_statement() -> Any:
    now = func.statement_timestamp()
    reached = (
        select(Customer.id)
        .where(
            or_(
                and_(SURVEY_FRESH, now - _INTERVAL >= SURVEY_BASE),
                and_(not_(SURVEY_FRESH), now - _AFTER_A_SURVEY >= SURVEY_BASE),
            )
        )
        .order_by(SURVEY_BASE)
        .limit(bindparam("limit"))
        .with_for_update(skip_locked=True)
        .cte("reached")
    )
    return (
        update(Customer)
        .where(Customer.id == reached.c.id)
        .values(last_survey_due_at=SURVEY_MOMENT, survey_due=true())
        .returning(Customer)
        .execution_options(synchronize_session=False)
    )


# Built once: the survey scheduler runs them on every wake-up.
_FIRE_SURVEYS = _fire_surveys_statement()
_NEXT_SURVEY = select(
    func.least(
        select(func.min(SURVEY_BASE)).where(SURVEY_FRESH).scalar_subquery() + _INTERVAL,
        select(func.min(SURVEY_BASE)).where(not_(SURVEY_FRESH)).scalar_subquery() + _AFTER_A_SURVEY,
    ),
    func.clock_timestamp(),
)


async def fire_reached_surveys(
    session: AsyncSession, *, interval: timedelta, after_a_survey: timedelta, limit: int
) -> Sequence[Customer]:
    """Mark up to `limit` customers whose survey moment has come as due, in one statement; return them after.

    Each one's `last_survey_due_at` becomes that moment, which moves its next one. Rows another
    replica holds are skipped, never waited for.
    """
    params = {"interval": interval, "after_a_survey": after_a_survey, "limit": limit}
    return (await session.execute(_FIRE_SURVEYS, params)).scalars().all()


async def next_survey_moment(
    session: AsyncSession, *, interval: timedelta, after_a_survey: timedelta
) -> tuple[datetime | None, datetime]:
    """The earliest survey moment (two probes of ix_customer_survey_base) and the database's clock."""
    row = (await session.execute(_NEXT_SURVEY, {"interval": interval, "after_a_survey": after_a_survey})).one()
    return row[0], row[1]
