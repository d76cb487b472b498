"""Send a department's notifications to its topic again (`customer-focus replay` runs it).

A consumer of `notifications.<department>` that lost its state (a new
dashboard, a restored warehouse) asks for the events since some moment. The
notifications service keeps each routed CloudEvent exactly as it was published
(`notification.value`, with the `department` extension); replay writes those
bytes as new outbox rows, and the running relay publishes them with the usual
guarantees. The CloudEvent ids are the originals, so consumers that already
have an event drop the copy.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Row, text
from sqlalchemy.ext.asyncio import AsyncSession

from shared.catalogue import department_topic
from shared.db import create_engine, create_sessionmaker
from shared.events import OutboxRecord
from shared.outbox import add_records
from shared.unit_of_work import unit_of_work

_PAGE = 1000
_DURATION_PART = re.compile(r"(\d+)\s*([smhdw])")
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, *, now: datetime) -> datetime:
    """`2h`, `1d12h`, `90m` (that long before `now`) or an ISO 8601 time (UTC unless it names a zone)."""
    compact = text.strip().lower().replace(" ", "")
    if compact and _DURATION_PART.sub("", compact) == "":
        length = timedelta()
        for amount, unit in _DURATION_PART.findall(compact):
            length += timedelta(**{_UNIT[unit]: int(amount)})
        return now - length
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (such as 2h, 30m, 1d12h) nor an ISO 8601 time "
            "(such as 2026-11-22T09:00:00Z)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment > now:
        raise ValueError(f"{text!r} is in the future")
    return moment


@dataclass(frozen=True)
class ReplayOutcome:
    """What a replay found (and, unless a dry run, handed to the relay)."""

    department: str
    since: datetime
    topic: str
    replayed: int
    dry_run: bool
    by_type: dict[str, int] = field(default_factory=dict)
    first_at: datetime | None = None
    last_at: datetime | None = None


async def replay_department(
    database_url: str, *, department: str, since: datetime, dry_run: bool = False
) -> ReplayOutcome:
    """Write an outbox row for every notification of `department` routed at or after `since`, oldest first."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            replayed, by_type, first_at, last_at = await _replay(session, department, since, dry_run=dry_run)
    finally:
        await engine.dispose()
    return ReplayOutcome(
        department=department,
        since=since,
        topic=department_topic(department),
        replayed=replayed,
        dry_run=dry_run,
        by_type=dict(by_type),
        first_at=first_at,
        last_at=last_at,
    )


async def _replay(
    session: AsyncSession, department: str, since: datetime, *, dry_run: bool
) -> tuple[int, Counter[str], datetime | None, datetime | None]:
    # Each outbox row needs an id of its own (the originals may still be pending); the message keeps the event's.
    run = uuid.uuid4()
    by_type: Counter[str] = Counter()
    first_at: datetime | None = None
    last_at: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    while page := await _notifications_since(session, department, since, after):
        if not dry_run:
            records = [
                OutboxRecord(
                    event_id=uuid.uuid5(run, str(row.id)),
                    topic=department_topic(department),
                    key=row.customer_id,
                    event_type=row.event_type,
                    value=row.value,
                )
                for row in page
            ]
            await add_records(session, records)
        by_type.update(row.event_type for row in page)
        first_at = first_at or page[0].created_at
        last_at = page[-1].created_at
        after = (page[-1].created_at, page[-1].id)
    return sum(by_type.values()), by_type, first_at, last_at


# This service's own table, read by the replay command only; oldest first on its
# (department, created_at, id) index.
_PAGE_AFTER = text(
    """
    SELECT id, customer_id, event_type, value, created_at FROM notification
    WHERE department = :department AND created_at >= :since
      AND (created_at, id) > (:after_created_at, :after_id)
    ORDER BY created_at, id LIMIT :limit
    """
)
_BEGINNING = (datetime.min.replace(tzinfo=UTC), uuid.UUID(int=0))


async def _notifications_since(
    session: AsyncSession, department: str, since: datetime, after: tuple[datetime, uuid.UUID] | None
) -> list[Row[Any]]:
    after_created_at, after_id = after or _BEGINNING
    result = await session.execute(
        _PAGE_AFTER,
        {
            "department": department,
            "since": since,
            "after_created_at": after_created_at,
            "after_id": after_id,
            "limit": _PAGE,
        },
    )
    return list(result.all())
