"""`customer-focus replay` against a running stack: the relay sends the stored events again, ids unchanged."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from typer.testing import CliRunner, Result

from ops.cli import app
from ops.stack import Stack
from services.notifications.replay import parse_since
from shared.catalogue import department_topic
from shared.db import asyncpg_dsn
from shared.events import parse_event
from tests.ops.support import post_complaint, wait_for_inbox
from tests.support.kafka import read_topic

runner = CliRunner()


async def replay(stack: Stack, *arguments: str) -> Result:
    """The command as an operator runs it, pointed at the stack's notifications database."""
    env = {"CF_NOTIFICATIONS_DATABASE_URL": stack.database_urls["notifications"], "CF_DEPARTMENTS": None}
    # In a thread: the command runs its own event loop.
    return await asyncio.to_thread(lambda: runner.invoke(app, ["replay", *arguments], env=env))


async def published_for(stack: Stack, department: str, customer_id: str) -> list[bytes]:
    """Every message of the department's topic about the customer, once the outbox holds none of theirs.

    Proven complete by a marker: one more complaint from the customer, routed to the department after the
    outbox has published the rest. The customer's messages share a partition, so any copy published
    before the marker is read before it; the marker itself is left out.
    """
    connection = await asyncpg.connect(asyncpg_dsn(stack.database_urls["notifications"]))
    try:
        deadline = time.monotonic() + 15
        while await connection.fetchval("SELECT count(*) FROM outbox_event WHERE key = $1", customer_id):
            assert time.monotonic() < deadline, "the relay did not publish the replayed events"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()
    marker = (await post_complaint(stack, customer_id, "A marker complaint, after the replay.")).get("id")
    assert isinstance(marker, str)
    topic, where = department_topic(department), lambda r: r.key == customer_id.encode()
    records = await read_topic(
        stack.bootstrap_servers,
        topic,
        until=lambda found: any(marker.encode() in r.value for r in found),
        where=where,
    )
    return [bytes(r.value) for r in records if marker.encode() not in r.value]


async def test_replay_sends_a_department_s_notifications_again_with_their_event_ids(stack: Stack) -> None:
    customer = f"replay-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC)
    await post_complaint(stack, customer, "The parcel arrived soaked.")
    await post_complaint(stack, customer, "And the replacement never came.")
    # Management: support also gets the events of the promises the response policies make for complaints.
    await wait_for_inbox(stack, "management", customer, count=2)

    result = await replay(stack, "--department", "management", "--since", since.isoformat())

    assert result.exit_code == 0, result.output
    assert "replayed 2 management notifications" in result.output
    assert "to notifications.management" in result.output
    messages = await published_for(stack, "management", customer)
    copies = Counter(messages)
    assert len(copies) == 2
    assert set(copies.values()) == {2}
    assert {parse_event(m)["department"] for m in copies} == {"management"}


async def test_replay_dry_run_counts_and_sends_nothing(stack: Stack) -> None:
    customer = f"replay-dry-{uuid.uuid4().hex[:8]}"
    since = datetime.now(UTC)
    await post_complaint(stack, customer)
    await wait_for_inbox(stack, "management", customer, count=1)

    dry = await replay(stack, "--department", "management", "--since", since.isoformat(), "--dry-run")
    real = await replay(stack, "--department", "management", "--since", since.isoformat())

    assert dry.exit_code == 0, dry.output
    assert "would replay 1 management notifications" in dry.output
    assert "dry run: nothing was written" in dry.output
    assert real.exit_code == 0, real.output
    # The original and the real replay's copy; a dry run that wrote would have added a third.
    assert len(await published_for(stack, "management", customer)) == 2


async def test_replay_of_a_period_without_notifications_says_so(stack: Stack) -> None:
    result = await replay(stack, "--department", "production", "--since", datetime.now(UTC).isoformat())

    assert result.exit_code == 0, result.output
    assert "no production notifications since" in result.output


def test_replay_rejects_an_unknown_department() -> None:
    result = runner.invoke(app, ["replay", "--department", "finance", "--since", "1h"], env={"CF_DEPARTMENTS": None})

    assert result.exit_code == 2
    assert "finance" in result.output


def test_replay_rejects_a_since_that_is_neither_a_duration_nor_a_time() -> None:
    result = runner.invoke(app, ["replay", "--department", "sales", "--since", "yesterday"])

    assert result.exit_code == 2
    assert "yesterday" in result.output


def test_since_takes_a_duration_back_from_now() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    assert parse_since("2h", now=now) == now - timedelta(hours=2)
    assert parse_since("1d12h", now=now) == now - timedelta(days=1, hours=12)
    assert parse_since("90m", now=now) == now - timedelta(minutes=90)
    assert parse_since("45s", now=now) == now - timedelta(seconds=45)


def test_since_takes_an_iso_time_in_utc_unless_it_names_a_zone() -> None:
    now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    assert parse_since("2026-11-22T09:30:00Z", now=now) == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    assert parse_since("2026-11-22T09:30:00", now=now) == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)
    assert parse_since("2026-11-22T10:30:00+01:00", now=now) == datetime(2026, 11, 22, 9, 30, tzinfo=UTC)


@pytest.mark.parametrize("text", ["", "2x", "h", "tomorrow", "2026-13-01", "2026-11-23T00:00:00Z"])
def test_since_rejects_what_is_neither_a_past_time_nor_a_duration(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|future"):
        parse_since(text, now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC))
