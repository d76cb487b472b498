"""notifications_0011 on a database from before it: each notification takes `customer_kind` from its event."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
from alembic import command
from alembic.script import ScriptDirectory

from ops.platform import migrations_of
from shared.migrations import alembic_config, upgrade
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform

REVISION = "notifications_0011"


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "notifications") as url:
        yield url


def test_existing_notifications_take_the_customer_kind_their_event_names(fresh_database: str) -> None:
    config = alembic_config(migrations_of("notifications"), fresh_database)
    before = ScriptDirectory.from_config(config).get_revision(REVISION).down_revision
    assert isinstance(before, str)
    upgrade(migrations_of("notifications"), fresh_database, before)
    # More than one batch of the backfill (10,000 rows): internal, external, none named, and not one of the two.
    kinds = [("internal", "external", None, "partner")[i % 4] for i in range(10_003)]
    ids = [uuid.uuid4() for _ in kinds]
    events: list[dict[str, object]] = [
        {"id": str(event_id), "data": {"customer_kind": kind}} for event_id, kind in zip(ids, kinds, strict=True)
    ]
    events[2]["data"] = {}
    run_sql(
        fresh_database,
        "INSERT INTO notification (id, event_id, department, event_type, customer_id, value) "
        "SELECT gen_random_uuid(), u.event_id, 'support', 'feedback.received', 'c', u.value "
        "FROM unnest($1::uuid[], $2::bytea[]) AS u(event_id, value)",
        ids,
        [orjson.dumps(e) for e in events],
    )

    upgrade(migrations_of("notifications"), fresh_database, REVISION)

    found = {
        str(row["event_id"]): row["customer_kind"]
        for row in run_sql(fresh_database, "SELECT event_id, customer_kind FROM notification")
    }
    expected = {
        e["id"]: kind if kind in ("internal", "external") else None for e, kind in zip(events, kinds, strict=True)
    }
    assert found == expected
    command.downgrade(config, before)
    columns = run_sql(
        fresh_database, "SELECT column_name FROM information_schema.columns WHERE table_name = 'notification'"
    )
    assert "customer_kind" not in {row["column_name"] for row in columns}
