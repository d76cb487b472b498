"""The accountability rollups (commitments_0008, _0009) equal a full recount after every kind of state change, and
the metrics read from them equal the full count over the table for windows that cut days and months anywhere, with
every filter."""

from __future__ import annotations

import importlib.util
import itertools
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from services.commitments.rollup import accountability_statement, pieces
from tests.commitments.support import create, in_seconds, unique, wait_for_status
from tests.support.platform import Platform
from tests.support.schema import schema_differences

MIGRATIONS = Path("services/commitments/migrations/versions")


def _migration(pattern: str) -> ModuleType:
    path = next(MIGRATIONS.glob(pattern))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The last migration that shapes the rollups: their tables, keys and backfills.
rollup_migration = _migration("*_0009_coarser_rollups.py")


def _rows(records: list[asyncpg.Record]) -> set[tuple[Any, ...]]:
    return {tuple(round(v, 3) if isinstance(v, float) else v for v in record.values()) for record in records}


async def rollup_differences(
    dsn: str, tables: Iterable[str] = tuple(rollup_migration.ROLLUPS)
) -> dict[str, tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]]:
    """Each rollup of `tables` whose non-zero rows are not what the migration's backfill counts now (one snapshot)."""
    counts = ", ".join(rollup_migration.COUNTS)
    nonzero = " OR ".join(f"{count} <> 0" for count in rollup_migration.COUNTS)
    differences = {}
    conn = await asyncpg.connect(dsn)
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            for table in tables:
                key = rollup_migration.key(table)
                kept = _rows(await conn.fetch(f"SELECT {key}, {counts} FROM {table} WHERE {nonzero}"))
                recounted = _rows(
                    await conn.fetch(rollup_migration.summed(table, rollup_migration.contributions("commitment", 1)))
                )
                assert recounted, f"nothing to compare in {table}"
                if kept != recounted:
                    differences[table] = (kept - recounted, recounted - kept)
    finally:
        await conn.close()
    return differences


async def assert_rollup_recounts(platform: Platform) -> None:
    assert await rollup_differences(platform.dsn("commitments")) == {}


async def test_rollup_equals_a_recount_after_every_kind_of_state_change(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    writer = platform.auth("commitments:read", "commitments:write")
    owner = unique("rollup")

    on_time = await create(client, writer, owner_id=owner, due_at=in_seconds(86_400))
    await assert_rollup_recounts(platform)
    assert (await client.post(f"/v1/commitments/{on_time['id']}/complete", headers=writer)).status_code == 200
    await assert_rollup_recounts(platform)

    moved = await create(client, writer, owner_id=owner, due_at=in_seconds(86_400), customer_kind="internal")
    response = await client.post(
        f"/v1/commitments/{moved['id']}/reschedule",
        # Moved into another month: the promise leaves its day and month rows for others.
        json={"due_at": in_seconds(40 * 86_400).isoformat(), "reason": "Waiting on the customer."},
        headers=writer,
    )
    assert response.status_code == 200, response.text
    await assert_rollup_recounts(platform)

    cancelled = await create(client, writer, owner_id=owner, due_at=in_seconds(86_400))
    response = await client.post(f"/v1/commitments/{cancelled['id']}/cancel", headers=writer)
    assert response.status_code == 200, response.text
    await assert_rollup_recounts(platform)

    # The scheduler's moves: due soon, then overdue (kept turns false), then met late.
    late = await create(client, writer, owner_id=owner, due_at=in_seconds(1.5))
    await wait_for_status(client, writer, late["id"], "due_soon")
    await assert_rollup_recounts(platform)
    await wait_for_status(client, writer, late["id"], "overdue")
    await assert_rollup_recounts(platform)
    assert (await client.post(f"/v1/commitments/{late['id']}/complete", headers=writer)).status_code == 200
    await assert_rollup_recounts(platform)

    # A row removed by hand (an operator's repair) leaves the rollup too.
    conn = await asyncpg.connect(platform.dsn("commitments"))
    try:
        assert await conn.execute("DELETE FROM commitment WHERE id = $1", uuid.UUID(cancelled["id"])) == "DELETE 1"
    finally:
        await conn.close()
    await assert_rollup_recounts(platform)


# --- the metrics from the rollup against the full count ---------------------------------------------------------

FULL_COUNT = """
SELECT department, owner_id, kind, grouping(department, owner_id, kind) AS level,
       count(*) FILTER (WHERE status <> 'cancelled') AS due,
       count(*) FILTER (WHERE status = 'met_on_time') AS met_on_time,
       count(*) FILTER (WHERE status = 'met_late') AS met_late,
       count(*) FILTER (WHERE status IN ('open', 'due_soon', 'overdue') AND due_at < $3) AS overdue,
       count(*) FILTER (WHERE status IN ('open', 'due_soon', 'overdue') AND due_at >= $3) AS open,
       count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
       coalesce(sum(renegotiations) FILTER (WHERE status <> 'cancelled'), 0) AS renegotiations,
       count(*) FILTER (WHERE kept IS TRUE) AS kept,
       count(*) FILTER (WHERE kept IS FALSE) AS broken,
       coalesce(sum(excuses), 0) AS excuses,
       avg(extract(epoch FROM completed_at - due_at) / 3600) FILTER (WHERE status = 'met_late') AS mean_lateness_hours
FROM commitment
WHERE department = $4 AND ($1::timestamptz IS NULL OR due_at >= $1) AND ($2::timestamptz IS NULL OR due_at < $2)
  AND ($5::text IS NULL OR owner_id = $5) AND ($6::text IS NULL OR customer_kind = $6)
GROUP BY GROUPING SETS ((department), (owner_id), (kind), ())
"""

STATUSES = ("open", "due_soon", "overdue", "met_on_time", "met_late", "cancelled")


def _figures(rows: Any) -> dict[tuple[Any, ...], dict[str, float]]:
    figures = {}
    for row in rows:
        values = dict(row)
        key = (values.pop("level"), values.pop("department"), values.pop("owner_id"), values.pop("kind"))
        figures[key] = {name: round(float(v), 6) if v is not None else -1.0 for name, v in values.items()}
    return figures


async def test_metrics_from_the_rollup_equal_the_full_count(platform: Platform) -> None:
    """Promises due every 7 hours from 70 days ago to 70 days ahead, in every state, in a department of their own;
    windows cutting days, months and today anywhere give the figures of the full count."""
    department = unique("rollup-dept")
    now = datetime.now(UTC)
    rows = []
    for step in range(480):
        due = now + timedelta(hours=7 * step - 70 * 24, minutes=step % 50)
        status = STATUSES[step % len(STATUSES)]
        met = status.startswith("met")
        rows.append(
            (
                uuid.uuid4(),
                f"customer-{step % 9}",
                "internal" if step % 4 == 0 else "external",
                f"owner-{step % 5}",
                department,
                ("promise", "acknowledge", "resolve", "follow_up")[step % 4],
                due,
                status,
                step % 3,
                due + timedelta(hours=step % 11) if met else None,
                {"met_on_time": True, "met_late": False, "overdue": False}.get(status),
                {"met_late": "met_late", "overdue": "overdue"}.get(status),
                step % 2,
            )
        )
    conn = await asyncpg.connect(platform.dsn("commitments"))
    try:
        await conn.executemany(
            "INSERT INTO commitment (id, customer_id, customer_kind, title, owner_id, department, kind, due_at,"
            " due_soon_at, source_type, status, renegotiations, completed_at, kept, broken_because, excuses,"
            " created_at, updated_at) VALUES ($1, $2, $3, 'A promise', $4, $5, $6, $7, $7, 'meeting', $8, $9, $10,"
            " $11, $12, $13, now(), now())",
            rows,
        )
        # One owner's oldest promises move to another department: their rollup rows here count zero now.
        moved = await conn.execute(
            "UPDATE commitment SET department = $1 WHERE department = $2 AND owner_id = 'owner-4' AND due_at < $3",
            unique("elsewhere"),
            department,
            now - timedelta(days=50),
        )
        assert moved != "UPDATE 0"
        windows: list[tuple[datetime | None, datetime | None]] = [
            (now - timedelta(days=days, hours=1), now + timedelta(days=days, hours=2)) for days in (35, 40, 48, 55, 62)
        ] + [
            (now - timedelta(days=69), now - timedelta(days=51)),
            (None, None),
            (now - timedelta(days=90), now),
            (now - timedelta(days=45, hours=5, minutes=3), now + timedelta(days=33, hours=2)),
            (now - timedelta(hours=3), now + timedelta(hours=5)),
            (None, now - timedelta(days=31, seconds=7)),
            (now + timedelta(days=2, minutes=1), None),
        ]
        cut = [piece for since, until in windows for piece in pieces(since, until, now)]
        assert {piece.grain for piece in cut} == {"raw", "day", "month"}
        assert any(piece.sign < 0 for piece in cut), "no month read less its other days"
        # Each filter the endpoint offers, alone and together: each reads another rollup (or the full key).
        filtered: list[dict[str, str]] = [
            {},
            {"customer_kind": "internal"},
            {"owner_id": "owner-4"},
            {"owner_id": "owner-2", "customer_kind": "external"},
        ]
        for (since, until), more in itertools.product(windows, filtered):
            expected = _figures(
                await conn.fetch(
                    FULL_COUNT, since, until, now, department, more.get("owner_id"), more.get("customer_kind")
                )
            )
            assert expected, (since, until, more)
            statement, params = accountability_statement(
                since=since, until=until, now=now, filters={"department": department, **more}
            )
            compiled = statement.compile(dialect=make_url("postgresql+asyncpg://").get_dialect()())
            expanded = compiled.construct_expanded_state(params)
            actual = _figures(await conn.fetch(expanded.statement, *expanded.positional_parameters))
            assert actual == expected, (since, until, more)
    finally:
        await conn.close()


async def test_the_rollup_table_matches_its_model(platform: Platform) -> None:
    tables = {"commitment_rollup", "commitment_rollup_department", "commitment_rollup_owner"}
    assert await schema_differences(platform.database_urls["commitments"], tables) == []
