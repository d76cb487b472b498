"""The rules of a promise: making, keeping, moving and dropping it, and its due moments."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from services.commitments import policies, repository
from services.commitments.config import Settings
from services.commitments.models import Commitment as CommitmentRow
from services.commitments.models import ResponsePolicy as ResponsePolicyRow
from services.commitments.repository import CommitmentFilter, NewPromise
from services.commitments.schemas import (
    Accountability,
    Cancellation,
    Commitment,
    CommitmentMetrics,
    CommitmentRescheduled,
    CommitmentSource,
    Completion,
    DepartmentAccountability,
    EarlierDueDate,
    KindAccountability,
    NewCommitment,
    OwnerAccountability,
    Rescheduling,
    ResponsePolicies,
    ResponsePolicy,
    ResponsePolicyIn,
)
from shared import catalogue
from shared.due_moments import FiredMoment, announce_moment
from shared.errors import Conflict, NotFound, field_error
from shared.events import build_event
from shared.outbox import add_event, add_records
from shared.pagination import page_of

CLOSED = ("met_on_time", "met_late", "cancelled")


def _require_department(settings: Settings, department: str, loc: list[str]) -> None:
    if department not in settings.departments:
        known = ", ".join(settings.departments)
        raise field_error(loc, f"unknown department '{department}'; known: {known}", slug="unknown-department")


def _require_future(due_at: datetime, now: datetime, loc: list[str]) -> None:
    if due_at <= now:
        raise field_error(loc, "must be in the future", slug="due-date-in-past")


def _arm(row: CommitmentRow, settings: Settings) -> None:
    """Set the due-soon and overdue moments for the current due date."""
    row.due_soon_at = row.due_at - timedelta(seconds=settings.commitments_due_soon_lead_seconds)
    row.next_event = "due_soon"
    row.next_event_at = row.due_soon_at


async def _announce(session: AsyncSession, settings: Settings, moment: datetime, now: datetime) -> None:
    """Wake the schedulers for `moment`, unless it lies beyond their longest sleep (they will look by then)."""
    if moment <= now + timedelta(seconds=settings.commitments_scheduler_max_sleep_seconds):
        await announce_moment(session, repository.SCHEDULE_CHANNEL, moment)


async def create(*, session: AsyncSession, settings: Settings, new: NewCommitment) -> Commitment:
    now = datetime.now(UTC)
    _require_department(settings, new.department, ["body", "department"])
    _require_future(new.due_at, now, ["body", "due_at"])
    promise = _new_promise(
        settings=settings,
        now=now,
        customer_id=new.customer_id,
        customer_kind=new.customer_kind,
        title=new.title,
        description=new.description,
        owner_id=new.owner_id,
        department=new.department,
        due_at=new.due_at,
        source=new.source,
        kind=new.kind,
    )
    await add_promises(session=session, settings=settings, promises=[promise], now=now)
    return promise.commitment


def _new_promise(
    *,
    settings: Settings,
    now: datetime,
    customer_id: str,
    customer_kind: str,
    title: str,
    description: str | None,
    owner_id: str,
    department: str,
    due_at: datetime,
    source: CommitmentSource,
    kind: str,
) -> NewPromise:
    """A new open promise and its `commitment.created` event (made in the current event context), not yet stored.

    It is armed for its due-soon moment (`repository.add_promises`), as `_arm` arms a rescheduled one.
    """
    commitment = Commitment(
        id=uuid.uuid4(),
        customer_id=customer_id,
        customer_kind=customer_kind,
        title=title,
        description=description,
        owner_id=owner_id,
        department=department,
        due_at=due_at,
        due_soon_at=due_at - timedelta(seconds=settings.commitments_due_soon_lead_seconds),
        source=source,
        status="open",
        renegotiations=0,
        history=[],
        completed_at=None,
        completion_note=None,
        cancelled_at=None,
        cancellation_reason=None,
        kind=kind,
        kept=None,
        broken_because=None,
        excuses=0,
        created_at=now,
        updated_at=now,
    )
    event = build_event(
        catalogue.COMMITMENT_CREATED, data=commitment, subject=str(commitment.id), customer_id=customer_id
    )
    return NewPromise(commitment, event)


async def add_promises(
    *, session: AsyncSession, settings: Settings, promises: Sequence[NewPromise], now: datetime
) -> None:
    """Store new promises with their events, in their order, and wake the schedulers for the earliest moment.

    An event over `CF_MAX_EVENT_BYTES` refuses the whole write (`EventTooLarge`) before anything is written.
    """
    if not promises:
        return
    await add_records(session, [p.event for p in promises])
    await repository.add_promises(session, [p.commitment for p in promises])
    # The schedulers read every armed moment when they wake: the earliest of the batch is enough to announce.
    await _announce(session, settings, min(p.commitment.due_soon_at for p in promises), now)


async def get(*, session: AsyncSession, commitment_id: uuid.UUID) -> Commitment:
    return Commitment.model_validate(await _find(session, commitment_id))


async def _find(session: AsyncSession, commitment_id: uuid.UUID, *, for_update: bool = False) -> CommitmentRow:
    row = await repository.get(session, commitment_id, for_update=for_update)
    if row is None:
        raise NotFound(f"No commitment {commitment_id}.")
    return row


async def list_page(
    *, session: AsyncSession, settings: Settings, where: CommitmentFilter, cursor: str | None, limit: int
) -> tuple[list[Commitment], str | None]:
    if where.department is not None:
        _require_department(settings, where.department, ["query", "department"])
    rows = await repository.page(session, where=where, cursor=cursor, limit=limit)
    items, next_cursor = page_of(rows, limit=limit, key=lambda r: (r.created_at, r.id))
    return [Commitment.model_validate(row) for row in items], next_cursor


def _require_unclosed(row: CommitmentRow, action: str) -> None:
    if row.status in CLOSED:
        raise Conflict(
            f"Commitment {row.id} is already {row.status.replace('_', ' ')}; it cannot be {action}.",
            slug="commitment-closed",
        )


def _disarm(row: CommitmentRow) -> None:
    row.next_event = None
    row.next_event_at = None


def _judge_excuse(row: CommitmentRow, now: datetime, *, agreed: bool, late: str, unagreed: str) -> None:
    """A reschedule or cancellation after the due date, or without the customer's agreement, is an excuse:
    counted, and the promise is broken (`late` or `unagreed` is why, unless it was broken before)."""
    after_due = row.status == "overdue" or now > row.due_at
    if after_due or not agreed:
        _break(row, late if after_due else unagreed)
        row.excuses += 1


def _break(row: CommitmentRow, because: str) -> None:
    """Mark the promise broken; one broken already keeps its first reason (nothing mends it)."""
    if row.kept is not False:
        row.kept = False
        row.broken_because = because


async def complete(*, session: AsyncSession, commitment_id: uuid.UUID, completion: Completion) -> Commitment:
    """Keep the promise: on time if done by `due_at` (and no overdue event went out), else late."""
    row = await _find(session, commitment_id, for_update=True)
    _require_unclosed(row, "completed")
    return await meet(session=session, row=row, at=datetime.now(UTC), note=completion.note)


async def meet(*, session: AsyncSession, row: CommitmentRow, at: datetime, note: str | None) -> Commitment:
    """Record the promise met at `at` (now, or when the work was done), with its event."""
    late = row.status == "overdue" or at > row.due_at
    row.status = "met_late" if late else "met_on_time"
    if late:
        _break(row, "met_late")
    elif row.kept is None:
        row.kept = True
    row.completed_at = at
    row.completion_note = note
    row.updated_at = datetime.now(UTC)
    _disarm(row)
    await session.flush()
    commitment = Commitment.model_validate(row)
    await add_event(
        session, catalogue.COMMITMENT_MET, data=commitment, subject=str(row.id), customer_id=row.customer_id
    )
    return commitment


async def reschedule(
    *, session: AsyncSession, settings: Settings, commitment_id: uuid.UUID, rescheduling: Rescheduling
) -> CommitmentRescheduled:
    """Move the due date, keep the old one in `history`, and re-arm both due events."""
    row = await _find(session, commitment_id, for_update=True)
    _require_unclosed(row, "rescheduled")
    now = datetime.now(UTC)
    _require_future(rescheduling.due_at, now, ["body", "due_at"])
    previous_due_at = row.due_at
    _judge_excuse(
        row, now, agreed=rescheduling.customer_agreed, late="overdue", unagreed="rescheduled_without_agreement"
    )
    earlier = EarlierDueDate(
        due_at=previous_due_at,
        reason=rescheduling.reason,
        rescheduled_at=now,
        customer_agreed=rescheduling.customer_agreed,
    )
    row.history = [*row.history, earlier.model_dump(mode="json")]
    row.renegotiations += 1
    row.due_at = rescheduling.due_at
    row.status = "open"
    row.updated_at = now
    _arm(row, settings)
    await session.flush()
    await _announce(session, settings, row.due_soon_at, now)
    rescheduled = CommitmentRescheduled(**dict(Commitment.model_validate(row)), previous_due_at=previous_due_at)
    await add_event(
        session, catalogue.COMMITMENT_RESCHEDULED, data=rescheduled, subject=str(row.id), customer_id=row.customer_id
    )
    return rescheduled


async def cancel(*, session: AsyncSession, commitment_id: uuid.UUID, cancellation: Cancellation) -> Commitment:
    """Drop the promise: agreed with the customer before the due date it counts neither way, else it is broken."""
    row = await _find(session, commitment_id, for_update=True)
    _require_unclosed(row, "cancelled")
    now = datetime.now(UTC)
    _judge_excuse(
        row,
        now,
        agreed=cancellation.customer_agreed,
        late="cancelled_after_due",
        unagreed="cancelled_without_agreement",
    )
    row.status = "cancelled"
    row.cancelled_at = now
    row.cancellation_reason = cancellation.reason
    row.updated_at = now
    _disarm(row)
    await session.flush()
    commitment = Commitment.model_validate(row)
    await add_event(
        session, catalogue.COMMITMENT_CANCELLED, data=commitment, subject=str(row.id), customer_id=row.customer_id
    )
    return commitment


async def fire_reached_moments(*, session: AsyncSession, limit: int) -> list[FiredMoment]:
    """Move every promise whose moment has come one step (open → due_soon → overdue), with its event.

    The claim skips rows another replica holds, and the status change and its
    outbox row commit together, so each moment fires once.
    """
    rows = await repository.advance_reached(session, limit=limit)
    if not rows:
        return []
    now = datetime.now(UTC)
    records = []
    fired = []
    for row in rows:
        if row.status == "due_soon":
            spec, moment = catalogue.COMMITMENT_DUE_SOON, row.due_soon_at
        else:
            spec, moment = catalogue.COMMITMENT_OVERDUE, row.due_at
        records.append(
            build_event(spec, data=Commitment.model_validate(row), subject=str(row.id), customer_id=row.customer_id)
        )
        fired.append(FiredMoment(spec.type, (now - moment).total_seconds()))
    # A moment fires whatever its event's size: the scheduler must not stall on one commitment.
    await add_records(session, records, refuse_oversized=False)
    return fired


async def next_moment(*, session: AsyncSession) -> tuple[datetime, float] | None:
    """The earliest armed moment and the seconds until it by the database's clock; None if none is armed."""
    moment, now = await repository.next_moment(session)
    return None if moment is None else (moment, (moment - now).total_seconds())


async def metrics(
    *,
    session: AsyncSession,
    settings: Settings,
    since: datetime | None,
    until: datetime | None,
    department: str | None,
    owner_id: str | None,
    customer_kind: str | None = None,
) -> CommitmentMetrics:
    if department is not None:
        _require_department(settings, department, ["query", "department"])
    if since is not None and until is not None and since >= until:
        raise field_error(["query", "until"], "must be after since")
    now = datetime.now(UTC)
    rows = await repository.accountability(
        session,
        since=since,
        until=until,
        department=department,
        owner_id=owner_id,
        now=now,
        customer_kind=customer_kind,
    )
    total = _accountability({})
    per_department: dict[str, Accountability] = {}
    owners: list[OwnerAccountability] = []
    kinds: list[KindAccountability] = []
    for row in rows:
        counts = _accountability(row._mapping)
        # GROUPING(department, owner_id, kind) sets a bit for each column the row does not group by.
        if row.level == 0b011:
            per_department[row.department] = counts
        elif row.level == 0b101:
            owners.append(OwnerAccountability(owner_id=row.owner_id, **counts.model_dump()))
        elif row.level == 0b110:
            kinds.append(KindAccountability(kind=row.kind, **counts.model_dump()))
        else:
            total = counts
    shown = [department] if department is not None else [*settings.departments]
    shown += sorted(name for name in per_department if name not in shown)
    departments = [
        DepartmentAccountability(department=name, **per_department.get(name, _accountability({})).model_dump())
        for name in shown
    ]
    return CommitmentMetrics(
        since=since,
        until=until,
        as_of=now,
        total=total,
        departments=departments,
        owners=sorted(owners, key=lambda o: o.owner_id),
        kinds=sorted(kinds, key=lambda k: k.kind),
    )


def _accountability(counts: Any) -> Accountability:
    get = counts.get
    met_on_time, met_late, overdue = int(get("met_on_time", 0)), int(get("met_late", 0)), int(get("overdue", 0))
    decided = met_on_time + met_late + overdue
    lateness = get("mean_lateness_hours")
    kept, broken = int(get("kept", 0)), int(get("broken", 0))
    return Accountability(
        due=int(get("due", 0)),
        met_on_time=met_on_time,
        met_late=met_late,
        overdue=overdue,
        open=int(get("open", 0)),
        cancelled=int(get("cancelled", 0)),
        on_time_rate=met_on_time / decided if decided else None,
        mean_lateness_hours=float(lateness) if lateness is not None else None,
        renegotiations=int(get("renegotiations", 0)),
        kept=kept,
        broken=broken,
        kept_rate=kept / (kept + broken) if kept + broken else None,
        excuses=int(get("excuses", 0)),
    )


async def list_policies(*, session: AsyncSession) -> ResponsePolicies:
    return ResponsePolicies(items=[ResponsePolicy.model_validate(row) for row in await repository.policies(session)])


async def put_policy(
    *, session: AsyncSession, settings: Settings, name: str, policy: ResponsePolicyIn
) -> tuple[ResponsePolicy, bool]:
    """Create or replace the policy `name`; True when it was created."""
    _require_department(settings, policy.department, ["body", "department"])
    now = datetime.now(UTC)
    values = {
        "match": policy.match.model_dump(mode="json", exclude_none=True),
        "department": policy.department,
        "owner_id": policy.owner_id,
        "acknowledge_within_seconds": policy.acknowledge_within_seconds,
        "resolve_within_seconds": policy.resolve_within_seconds,
        "follow_up_within_seconds": policy.follow_up_within_seconds,
        "updated_at": now,
    }
    row = await repository.policy(session, name, for_update=True)
    if row is None:
        row = ResponsePolicyRow(name=name, created_at=now, **values)
        await repository.add_policy(session, row)
        return ResponsePolicy.model_validate(row), True
    for field, value in values.items():
        setattr(row, field, value)
    await session.flush()
    return ResponsePolicy.model_validate(row), False


async def delete_policy(*, session: AsyncSession, name: str) -> None:
    row = await repository.policy(session, name, for_update=True)
    if row is None:
        raise NotFound(f"No response policy '{name}'.")
    await repository.delete_policy(session, row)


async def response_policies(*, session: AsyncSession) -> list[ResponsePolicyRow]:
    """Every response policy, for `response_promises` (read once for a batch of feedback)."""
    return list(await repository.policies(session))


def response_promises(
    *,
    settings: Settings,
    policies_in_force: list[ResponsePolicyRow],
    feedback: dict[str, Any],
    start: datetime,
    kinds: frozenset[str],
    now: datetime,
) -> list[NewPromise]:
    """The promises of `kinds` every matching policy makes for `feedback`, due from `start` (not yet stored).

    The due date may already be past (the event waited in the broker): the scheduler then fires at once.
    """
    feedback_kind = str(feedback.get("kind") or "feedback").replace("_", " ")
    return [
        _new_promise(
            settings=settings,
            now=now,
            customer_id=str(feedback["customer_id"]),
            customer_kind=str(feedback.get("customer_kind") or "external"),
            title=policies.TITLES[promise.kind].format(kind=feedback_kind),
            description=f"Made by the response policy '{promise.policy}'.",
            owner_id=promise.owner_id,
            department=promise.department,
            due_at=promise.due_from(start),
            source=CommitmentSource(type="feedback", id=str(feedback["id"])),
            kind=promise.kind,
        )
        for promise in policies.promises_for(policies_in_force, feedback, kinds=kinds)
    ]


async def feedback_with_response_promises(*, session: AsyncSession, feedback_ids: Sequence[str]) -> set[str]:
    """Which of `feedback_ids` already have response promises (one query for a batch)."""
    return await repository.feedback_with_response_promises(
        session, feedback_ids=feedback_ids, kinds=("acknowledge", "resolve", "follow_up")
    )


async def meet_response_promises(
    *, session: AsyncSession, feedback_id: str, kinds: frozenset[str], at: datetime, note: str
) -> list[Commitment]:
    """Meet the unmet response promises of `kinds` for a feedback, as of `at`."""
    rows = await repository.response_promises(session, feedback_id=feedback_id, kinds=sorted(kinds), unmet_only=True)
    return [await meet(session=session, row=row, at=at, note=note) for row in rows]
