"""The list's due_before filter walks `(created_at, id)` from its moment and the promises made after their due date
apart (commitments_0010): every page is what the plain filter would give, newest first, and both walks use an
index."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.commitments.support import unique
from tests.support.platform import Platform


async def test_due_before_pages_are_the_plain_filter_s_newest_first(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    owner = unique("due-before")
    now = datetime.now(UTC)
    cutoff = now - timedelta(days=10)
    rows = []
    for step in range(60):
        created = now - timedelta(days=30) + timedelta(hours=11 * step)
        # Most are due after they were made; every seventh (a late response promise) before.
        due = created - timedelta(hours=5) if step % 7 == 0 else created + timedelta(hours=3 + 17 * (step % 5))
        rows.append((uuid.uuid4(), owner, due, created))
    # Made after the cutoff for a due date before it (a response promise made late).
    rows += [(uuid.uuid4(), owner, cutoff - timedelta(hours=2), cutoff + timedelta(hours=1))]
    rows += [(uuid.uuid4(), owner, cutoff - timedelta(days=1), now - timedelta(days=1))]
    # Two made in the same instant: the cursor's id breaks the tie.
    rows.append((uuid.uuid4(), owner, cutoff - timedelta(days=3), rows[10][3]))
    conn = await asyncpg.connect(platform.dsn("commitments"))
    try:
        await conn.executemany(
            "INSERT INTO commitment (id, customer_id, customer_kind, title, owner_id, department, due_at, due_soon_at,"
            " source_type, status, created_at, updated_at) VALUES ($1, 'c', 'external', 'A promise', $2, 'support',"
            " $3, $3, 'manual', 'open', $4, $4)",
            rows,
        )
        expected = [
            str(row["id"])
            for row in await conn.fetch(
                "SELECT id FROM commitment WHERE owner_id = $1 AND due_at < $2 ORDER BY created_at DESC, id DESC",
                owner,
                cutoff,
            )
        ]
    finally:
        await conn.close()
    assert len(expected) > 10
    assert any(due < cutoff <= created for _, _, due, created in rows), "no promise made after its due date"

    reader = platform.auth("commitments:read")
    listed: list[str] = []
    cursor: str | None = None
    while True:
        params = {"owner_id": owner, "due_before": cutoff.isoformat(), "limit": "4"}
        if cursor is not None:
            params["cursor"] = cursor
        response = await client.get("/v1/commitments", params=params, headers=reader)
        assert response.status_code == 200, response.text
        listed += [item["id"] for item in response.json()["items"]]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            break
    assert listed == expected


async def test_both_due_before_walks_use_an_index(platform: Platform) -> None:
    made_before = await platform.plan(
        "commitments",
        "SELECT id FROM commitment WHERE due_at < now() AND created_at < now() ORDER BY created_at DESC, id DESC"
        " LIMIT 51",
    )
    made_after = await platform.plan(
        "commitments",
        "SELECT id FROM commitment WHERE due_at < now() AND created_at >= now() AND due_at < created_at"
        " ORDER BY created_at DESC, id DESC LIMIT 51",
    )
    assert "Seq Scan" not in made_before + made_after
    assert "ix_commitment_made_after_due" in made_after
