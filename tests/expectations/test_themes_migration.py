"""expectations_0005 on a database from before it: every expectation and kept version gets its themes."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import orjson
import pytest
from alembic import command

from ops.platform import migrations_of
from shared.migrations import alembic_config, upgrade
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "expectations") as url:
        yield url


def test_existing_expectations_and_versions_get_the_themes_of_their_words(fresh_database: str) -> None:
    upgrade(migrations_of("expectations"), fresh_database, "expectations_0004")
    meeting_id, now = uuid.uuid4(), datetime.now(UTC)
    run_sql(
        fresh_database,
        "INSERT INTO meeting (id, customer_id, customer_kind, held_at, attendees, customer_participants, notes, "
        "created_at) VALUES ($1, 'c', 'external', $2, $3, $3, '', $2)",
        meeting_id,
        now,
        orjson.dumps([]).decode(),
    )
    # More than one batch of the backfill (1,000 rows), so that the walk along the key is exercised.
    words = {
        uuid.uuid4(): (f"Parcel {i} came late.", "Invoices must be right.") if i % 2 else (f"Note {i}.", "Understood.")
        for i in range(1_205)
    }
    run_sql(
        fresh_database,
        "INSERT INTO expectation (id, meeting_id, customer_id, customer_kind, version, status, statement, restatement,"
        " priority, key_point, capability, recorded_at, created_at, updated_at) "
        "SELECT u.id, $1, 'c', 'external', 2, 'recorded', u.statement, u.restatement, 'high', false, 'cannot_meet',"
        " now(), now(), now() FROM unnest($2::uuid[], $3::text[], $4::text[]) AS u(id, statement, restatement)",
        meeting_id,
        list(words),
        [statement for statement, _ in words.values()],
        [restatement for _, restatement in words.values()],
    )
    first = next(iter(words))
    run_sql(
        fresh_database,
        "INSERT INTO expectation_version (expectation_id, version, status, statement, restatement, priority, "
        "key_point, capability, recorded_at, superseded_at) "
        "VALUES ($1, 1, 'recorded', 'Nobody answers at support.', 'Understood.', 'low', false, 'partial', "
        "now(), now())",
        first,
    )

    upgrade(migrations_of("expectations"), fresh_database)

    themed = {row["id"]: row["themes"] for row in run_sql(fresh_database, "SELECT id, themes FROM expectation")}
    assert themed == {
        expectation_id: ["delivery", "billing"] if statement.startswith("Parcel") else []
        for expectation_id, (statement, _) in words.items()
    }
    [version] = run_sql(fresh_database, "SELECT themes FROM expectation_version")
    assert version["themes"] == ["support_responsiveness"]

    command.downgrade(alembic_config(migrations_of("expectations"), fresh_database), "expectations_0004")
    columns = run_sql(
        fresh_database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'expectation'"
    )
    assert "themes" not in {row["column_name"] for row in columns}
