"""notifications_0004 on a database from before it: keys gain a department, stored responses lose their secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import orjson
import pytest
from alembic import command

from ops.platform import migrations_of
from shared.migrations import alembic_config, upgrade
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform

SECRET = "whsec_" + "A" * 43 + "="


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "notifications") as url:
        yield url


def test_keys_stored_before_keep_working_and_lose_their_secret(fresh_database: str) -> None:
    upgrade(migrations_of("notifications"), fresh_database, "notifications_0003")
    subscription = {"id": str(uuid.uuid4()), "department": "sales", "secret": SECRET}
    rule = {"id": str(uuid.uuid4()), "name": "r"}
    insert = (
        "INSERT INTO idempotency_key (sub, key, route, fingerprint, status_code, response_body) "
        "VALUES ('alice', $1, $2, 'f', 201, $3)"
    )
    run_sql(fresh_database, insert, "k-sub", "/v1/subscriptions", orjson.dumps(subscription))
    run_sql(fresh_database, insert, "k-rule", "/v1/routing-rules", orjson.dumps(rule))

    upgrade(migrations_of("notifications"), fresh_database)

    rows = {
        row["key"]: row for row in run_sql(fresh_database, "SELECT key, department, response_body FROM idempotency_key")
    }
    assert {row["department"] for row in rows.values()} == {""}
    assert orjson.loads(rows["k-sub"]["response_body"]) == {**subscription, "secret": None, "note": "secret_shown_once"}
    assert orjson.loads(rows["k-rule"]["response_body"]) == rule
    primary_key = run_sql(
        fresh_database,
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'idempotency_key'::regclass AND i.indisprimary",
    )
    assert {row["attname"] for row in primary_key} == {"sub", "department", "key"}

    # A key of a department-bound token: forgotten on the way down, where it would collide with alice's.
    run_sql(
        fresh_database,
        "INSERT INTO idempotency_key (sub, department, key, route, fingerprint, status_code, response_body) "
        "VALUES ('alice', 'sales', 'k-sub', '/v1/subscriptions', 'g', 201, '{}')",
    )

    command.downgrade(alembic_config(migrations_of("notifications"), fresh_database), "notifications_0003")

    kept = run_sql(fresh_database, "SELECT sub, key FROM idempotency_key ORDER BY key")
    assert [(row["sub"], row["key"]) for row in kept] == [("alice", "k-rule"), ("alice", "k-sub")]
