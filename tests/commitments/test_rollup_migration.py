"""commitments_0009 on a database with promises: the coarser rollups are backfilled to a recount and kept by the
same triggers; its downgrade drops them and leaves commitments_0008's rollup kept as before. commitments_0011: an
update that changes nothing the rollups count writes none of them, and one that does is still counted exactly."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from alembic import command

from ops.platform import migrations_of
from shared.db import asyncpg_dsn
from shared.migrations import alembic_config, upgrade
from tests.commitments.test_rollup import rollup_differences, rollup_migration
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform

STATUSES = ("open", "met_on_time", "met_late", "overdue", "cancelled")


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "commitments") as url:
        yield url


def _promise(url: str, step: int, now: datetime) -> None:
    status = STATUSES[step % len(STATUSES)]
    due = now + timedelta(days=step * 9 - 60, hours=step)
    run_sql(
        url,
        "INSERT INTO commitment (id, customer_id, customer_kind, title, owner_id, department, kind, due_at, "
        "due_soon_at, source_type, status, completed_at, kept, broken_because, created_at, updated_at) "
        "VALUES ($1, 'c', $2, 'A promise', $3, $4, $5, $6, $6, 'manual', $7, $8, $9, $10, $11, $11)",
        uuid.uuid4(),
        ("internal", "external")[step % 2],
        f"owner-{step % 3}",
        ("sales", "support")[step % 2],
        ("promise", "resolve", "follow_up")[step % 3],
        due,
        status,
        due + timedelta(hours=3) if status.startswith("met") else None,
        {"met_on_time": True, "met_late": False, "overdue": False}.get(status),
        {"met_late": "met_late", "overdue": "overdue"}.get(status),
        now,
    )


def test_the_coarser_rollups_are_backfilled_kept_and_dropped_on_downgrade(fresh_database: str) -> None:
    now = datetime.now(UTC)
    upgrade(migrations_of("commitments"), fresh_database, "commitments_0008")
    for step in range(20):
        _promise(fresh_database, step, now)

    upgrade(migrations_of("commitments"), fresh_database, "commitments_0009")
    dsn = asyncpg_dsn(fresh_database)
    assert asyncio.run(rollup_differences(dsn)) == {}
    # Written after the upgrade: every rollup follows inserts, updates and deletes.
    for step in range(20, 26):
        _promise(fresh_database, step, now)
    run_sql(fresh_database, "UPDATE commitment SET owner_id = 'owner-9', due_at = due_at + interval '40 days'")
    run_sql(fresh_database, "DELETE FROM commitment WHERE status = 'cancelled'")
    assert asyncio.run(rollup_differences(dsn)) == {}

    command.downgrade(alembic_config(migrations_of("commitments"), fresh_database), "commitments_0008")
    tables = {row["tablename"] for row in run_sql(fresh_database, "SELECT tablename FROM pg_tables")}
    assert tables >= {"commitment", "commitment_rollup"}
    assert not tables & set(rollup_migration.NEW)
    # commitments_0008's rollup is still kept by its triggers.
    _promise(fresh_database, 30, now)
    run_sql(fresh_database, "UPDATE commitment SET status = 'met_on_time', kept = true WHERE status = 'open'")
    assert asyncio.run(rollup_differences(dsn, ["commitment_rollup"])) == {}


async def _update_while_the_rollups_are_locked(dsn: str, update: str) -> None:
    """Run `update` while another transaction holds every rollup against writes (a write would wait and time out)."""
    holder, writer = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
    try:
        async with holder.transaction():
            await holder.execute(f"LOCK TABLE {', '.join(rollup_migration.ROLLUPS)} IN SHARE MODE")
            await writer.execute("SET lock_timeout = '5s'")
            await writer.execute(update)
    finally:
        await holder.close()
        await writer.close()


def test_an_update_that_changes_nothing_counted_leaves_the_rollups_alone(fresh_database: str) -> None:
    now = datetime.now(UTC)
    upgrade(migrations_of("commitments"), fresh_database, "commitments_0011")
    for step in range(20):
        _promise(fresh_database, step, now)
    dsn = asyncpg_dsn(fresh_database)

    # The scheduler's due-soon move: open and due_soon both count as unmet, so no rollup is written (or waited for).
    due_soon = "UPDATE commitment SET status = 'due_soon' WHERE status = 'open' AND owner_id <> 'owner-0'"
    asyncio.run(_update_while_the_rollups_are_locked(dsn, due_soon))
    assert asyncio.run(rollup_differences(dsn)) == {}
    # One firing of both moves: the promises going overdue are broken, and counted so.
    run_sql(
        fresh_database,
        "UPDATE commitment SET status = CASE WHEN status = 'open' THEN 'due_soon' ELSE 'overdue' END, "
        "kept = CASE WHEN status = 'open' THEN kept ELSE false END, "
        "broken_because = CASE WHEN status = 'open' THEN broken_because ELSE 'overdue' END "
        "WHERE status IN ('open', 'due_soon')",
    )
    assert asyncio.run(rollup_differences(dsn)) == {}

    command.downgrade(alembic_config(migrations_of("commitments"), fresh_database), "commitments_0010")
    run_sql(fresh_database, "UPDATE commitment SET status = 'met_late', completed_at = now() WHERE status = 'overdue'")
    assert asyncio.run(rollup_differences(dsn)) == {}
