"""Capture is atomic: the feedback row and its event row commit or roll back together.

The capture writes both rows in one statement: on its own, with the captures
of concurrent requests (no Idempotency-Key), or inside the request's
transaction. These tests prove both. No app runs here, so no relay drains
the outbox meanwhile.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.feedback import repository, service
from services.feedback.app import create_app
from services.feedback.config import DEFAULT_TAXONOMY_FILE
from services.feedback.schemas import FeedbackDraft
from services.feedback.triage import Taxonomy, Triage
from shared.catalogue import FEEDBACK_RECEIVED
from shared.events import OutboxRecord, build_event
from tests.feedback.conftest import complaint, feedback_settings, new_customer, stored_count
from tests.support.platform import Platform, serve, sessions_on


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def sessions(platform: Platform) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions_on(platform.database_urls["feedback"]) as made:
        yield made


async def _events_for(platform: Platform, customer_id: str) -> int:
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM outbox_event WHERE key = $1", customer_id)
    return int(rows[0]["n"])


async def _capture(session: AsyncSession, platform: Platform, customer_id: str) -> None:
    draft = FeedbackDraft.model_validate(complaint(customer_id))
    triage = Triage(Taxonomy.load(DEFAULT_TAXONOMY_FILE))
    await service.capture(
        repository.Captures(session), draft=draft, triage=triage, settings=feedback_settings(platform)
    )


async def test_a_rolled_back_capture_leaves_neither_feedback_nor_event(
    sessions: async_sessionmaker[AsyncSession], platform: Platform
) -> None:
    customer = new_customer()
    async with sessions() as session:
        await _capture(session, platform, customer)
        await session.rollback()
    assert await stored_count(platform, customer) == 0
    assert await _events_for(platform, customer) == 0


async def test_a_committed_capture_leaves_the_feedback_and_its_event(
    sessions: async_sessionmaker[AsyncSession], platform: Platform
) -> None:
    customer = new_customer()
    async with sessions() as session:
        await _capture(session, platform, customer)
        assert await stored_count(platform, customer) == 0, "visible before commit"
        await session.commit()
    assert await stored_count(platform, customer) == 1
    assert await _events_for(platform, customer) == 1


async def test_a_capture_whose_event_cannot_be_written_stores_no_feedback_without_a_transaction(
    sessions: async_sessionmaker[AsyncSession], platform: Platform
) -> None:
    # The event id is unique in the outbox: a second row with the same id fails the statement.
    customer = new_customer()
    event = build_event(FEEDBACK_RECEIVED, data={"id": "x"}, subject="x", customer_id=customer)
    together = repository.group_captures(sessions)
    async with sessions() as session:
        captures = repository.Captures(session, together)
        await captures.insert(_row(customer), event)
        with pytest.raises(IntegrityError):
            await captures.insert(_row(customer), event)
        assert not session.in_transaction(), "written on their own, not in this session's transaction"
    assert await stored_count(platform, customer) == 1
    assert await _events_for(platform, customer) == 1


async def test_a_customers_capture_does_not_wait_for_their_open_capture_on_a_day_already_marked(
    sessions: async_sessionmaker[AsyncSession], platform: Platform
) -> None:
    # Group commit writes two statements at once, often of one customer: once word of mouth has marked the
    # customer's day, neither locks its row, so neither waits for the other's commit (the day rollups differ
    # here by channel; their stripes keep concurrent statements apart otherwise).
    customer = new_customer()
    together = repository.group_captures(sessions)
    await repository.Captures(None, together).insert(_row(customer), _event(customer))
    async with sessions() as holding:
        await repository.Captures(holding).insert(_row(customer, channel="phone"), _event(customer))
        async with sessions() as other:
            await other.execute(text("SET LOCAL lock_timeout = '5s'"))
            await repository.Captures(other).insert(_row(customer, channel="web"), _event(customer))
            await other.commit()
        await holding.commit()
    assert await stored_count(platform, customer) == 3
    # A new mood on a marked day is still marked.
    await repository.Captures(None, together).insert(_row(customer, kind="compliment"), _event(customer))
    marked = await platform.fetch(
        "feedback",
        "SELECT count(*) AS rows, bool_and(position('1' IN unhappy_days::text) = extract(doy FROM now() AT TIME "
        "ZONE 'UTC')) AS unhappy, bool_and(unhappy_days = happy_days) AS happy FROM feedback_customer_year "
        "WHERE customer_id = $1",
        customer,
    )
    assert (marked[0]["rows"], marked[0]["unhappy"], marked[0]["happy"]) == (1, True, True)


async def test_captures_open_at_once_do_not_wait_for_each_other_on_the_same_day_rollup_rows(
    platform: Platform,
) -> None:
    # Two open captures with the same rollup keys, on backends whose pids are equal modulo 4: each writes a
    # stripe no other open capture writes, so the second commits while the first is still open.
    customer = new_customer()
    async with sessions_on(platform.database_urls["feedback"], pool_size=5) as sessions:
        await repository.Captures(None, repository.group_captures(sessions)).insert(_row(customer), _event(customer))
        opened = [sessions() for _ in range(5)]
        try:
            pids = [(await session.execute(text("SELECT pg_backend_pid()"))).scalar_one() for session in opened]
            # Five backends: two of them have the same pid modulo 4.
            holding, other = next(
                (opened[a], opened[b]) for a, b in itertools.combinations(range(5), 2) if pids[a] % 4 == pids[b] % 4
            )
            await repository.Captures(holding).insert(_row(customer), _event(customer))
            await other.execute(text("SET LOCAL lock_timeout = '5s'"))
            await repository.Captures(other).insert(_row(customer), _event(customer))
            await other.commit()
            await holding.commit()
        finally:
            for session in opened:
                await session.close()
    assert await stored_count(platform, customer) == 3
    key = "day = CAST(timezone('UTC', now()) AS date) AND customer_kind = 'external' AND channel = 'email'"
    counted = await platform.fetch(
        "feedback",
        f"SELECT (SELECT sum(feedback) FROM feedback_day_count WHERE {key} AND product IS NULL) AS rollup, "
        f"(SELECT count(*) FROM feedback WHERE CAST(timezone('UTC', occurred_at) AS date) = "
        f"CAST(timezone('UTC', now()) AS date) AND customer_kind = 'external' AND channel = 'email' "
        f"AND product IS NULL) AS recount",
    )
    assert counted[0]["rollup"] == counted[0]["recount"]


def _event(customer_id: str) -> OutboxRecord:
    return build_event(FEEDBACK_RECEIVED, data={"id": "x"}, subject="x", customer_id=customer_id)


def _row(customer_id: str, **fields: Any) -> repository.NewFeedback:
    now = datetime.now(UTC)
    return repository.NewFeedback(
        id=uuid.uuid4(),
        customer_id=customer_id,
        customer_kind="external",
        channel="email",
        kind="complaint",
        text="Late again.",
        rating_scale=None,
        rating_value=None,
        product=None,
        tags=[],
        occurred_at=now,
        status="new",
        sentiment_score=0.0,
        sentiment_label="neutral",
        sentiment_source="text",
        themes=[],
        created_at=now,
    )._replace(**fields)


async def test_more_concurrent_captures_than_pooled_connections_return_every_connection(platform: Platform) -> None:
    # Pools of 2 (+2 overflow): more requests than connections wait their turn, and none leaks.
    settings = feedback_settings(platform, database_pool_size=2, run_workers=False)
    customer = new_customer()
    pool_errors = _Collect()
    pool_logger = logging.getLogger("sqlalchemy.pool")
    pool_logger.addHandler(pool_errors)
    try:
        async with serve(create_app(settings)) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/v1/feedback", json=complaint(customer), headers=platform.auth("feedback:write"))
                    for _ in range(24)
                )
            )
    finally:
        pool_logger.removeHandler(pool_errors)
    assert [r.status_code for r in responses] == [201] * 24
    assert await stored_count(platform, customer) == 24
    assert pool_errors.messages == []


class _Collect(logging.Handler):
    """Keeps the errors a logger emits (the app's logging setup replaces the root handlers)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.getMessage()} {record.exc_info[1] if record.exc_info else ''}")
