"""commitments_0005 and _0006 on a database from before them: promises judged by what is known, policies seeded."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from shared.db import asyncpg_dsn
from shared.migrations import alembic_config, upgrade
from tests.support.platform import Platform


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    url = make_url(platform.database_urls["commitments"])
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    server = asyncpg_dsn(url.set(database="postgres").render_as_string(hide_password=False))
    asyncio.run(_execute(server, f'CREATE DATABASE "{name}"'))
    yield url.set(database=name).render_as_string(hide_password=False)
    asyncio.run(_execute(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _execute(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


def _run(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    return asyncio.run(_execute(asyncpg_dsn(url), sql, *args))


def test_existing_promises_are_judged_by_their_status_and_dates(fresh_database: str) -> None:
    upgrade("commitments", fresh_database, "commitments_0004")
    now = datetime.now(UTC)
    past, future = now - timedelta(days=1), now + timedelta(days=1)
    late_move = [{"due_at": (past - timedelta(days=2)).isoformat(), "reason": "r", "rescheduled_at": past.isoformat()}]
    early_move = [{"due_at": future.isoformat(), "reason": "r", "rescheduled_at": now.isoformat()}]
    rows = {
        "overdue": ("overdue", past, None, []),
        "met_late": ("met_late", past, None, []),
        "met_on_time": ("met_on_time", future, None, early_move),
        "open": ("open", future, None, []),
        "cancelled_early": ("cancelled", future, now, []),
        "cancelled_late": ("cancelled", past, now, []),
        "moved_late": ("open", future, None, late_move),
    }
    for title, (status, due_at, cancelled_at, history) in rows.items():
        _run(
            fresh_database,
            "INSERT INTO commitment (id, customer_id, customer_kind, title, owner_id, department, due_at, "
            "due_soon_at, source_type, status, history, cancelled_at, created_at, updated_at) "
            "VALUES ($1, 'c', 'external', $2, 'o', 'sales', $3, $3, 'manual', $4, $5, $6, $7, $7)",
            uuid.uuid4(),
            title,
            due_at,
            status,
            orjson.dumps(history).decode(),
            cancelled_at,
            now,
        )

    upgrade("commitments", fresh_database)

    judged = {
        row["title"]: (row["kind"], row["kept"], row["broken_because"], row["excuses"])
        for row in _run(fresh_database, "SELECT title, kind, kept, broken_because, excuses FROM commitment")
    }
    assert judged == {
        "overdue": ("promise", False, "overdue", 0),
        "met_late": ("promise", False, "met_late", 0),
        "met_on_time": ("promise", True, None, 0),
        "open": ("promise", None, None, 0),
        "cancelled_early": ("promise", None, None, 0),
        "cancelled_late": ("promise", False, "cancelled_after_due", 1),
        "moved_late": ("promise", False, "overdue", 1),
    }
    command.downgrade(alembic_config("commitments", fresh_database), "commitments_0004")
    columns = _run(fresh_database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'commitment'")
    assert "kept" not in {row["column_name"] for row in columns}


def test_the_default_response_policies_are_seeded_and_go_with_a_downgrade(fresh_database: str) -> None:
    upgrade("commitments", fresh_database)

    rows = _run(
        fresh_database,
        "SELECT name, match, department, acknowledge_within_seconds AS ack, resolve_within_seconds AS resolve, "
        "follow_up_within_seconds AS follow_up FROM response_policy ORDER BY name",
    )
    seeded = {
        row["name"]: (orjson.loads(row["match"]), row["department"], row["ack"], row["resolve"], row["follow_up"])
        for row in rows
    }
    assert seeded == {
        "complaint": ({"kind": "complaint"}, "support", 4 * 3600, 72 * 3600, None),
        "detractor": ({"detractor": True}, "support", None, None, 48 * 3600),
        "question": ({"kind": "question"}, "support", 24 * 3600, None, None),
    }
    command.downgrade(alembic_config("commitments", fresh_database), "commitments_0005")
    tables = _run(fresh_database, "SELECT to_regclass('response_policy') AS found")
    assert tables[0]["found"] is None
