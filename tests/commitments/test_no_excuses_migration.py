"""commitments_0005 and _0006 on a database from before them: promises judged by what is known, policies seeded."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from alembic import command

from ops.platform import migrations_of
from shared.migrations import alembic_config, upgrade
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "commitments") as url:
        yield url


def test_existing_promises_are_judged_by_their_status_and_dates(fresh_database: str) -> None:
    upgrade(migrations_of("commitments"), fresh_database, "commitments_0004")
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
        run_sql(
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

    upgrade(migrations_of("commitments"), fresh_database)

    judged = {
        row["title"]: (row["kind"], row["kept"], row["broken_because"], row["excuses"])
        for row in run_sql(fresh_database, "SELECT title, kind, kept, broken_because, excuses FROM commitment")
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
    command.downgrade(alembic_config(migrations_of("commitments"), fresh_database), "commitments_0004")
    columns = run_sql(
        fresh_database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'commitment'"
    )
    assert "kept" not in {row["column_name"] for row in columns}


def test_the_default_response_policies_are_seeded_and_go_with_a_downgrade(fresh_database: str) -> None:
    upgrade(migrations_of("commitments"), fresh_database)

    rows = run_sql(
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
    command.downgrade(alembic_config(migrations_of("commitments"), fresh_database), "commitments_0005")
    tables = run_sql(fresh_database, "SELECT to_regclass('response_policy') AS found")
    assert tables[0]["found"] is None
