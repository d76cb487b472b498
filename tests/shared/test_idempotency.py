"""Idempotency-Key (contract §1): replay, a different body, a concurrent duplicate."""

from __future__ import annotations

import asyncio
import uuid

import httpx

from tests.support.platform import Platform
from tests.support.waiting import eventually


def _key() -> str:
    return f"key-{uuid.uuid4()}"


async def _count(platform: Platform, name: str) -> int:
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM probe WHERE name = $1", name)
    return int(rows[0]["n"])


async def test_same_key_and_body_replays_the_first_response(probe: httpx.AsyncClient, platform: Platform) -> None:
    name, headers = f"p-{uuid.uuid4().hex[:8]}", {**platform.auth("feedback:write"), "Idempotency-Key": _key()}
    first = await probe.post("/probes", json={"name": name}, headers=headers)
    second = await probe.post("/probes", json={"name": name}, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    assert await _count(platform, name) == 1


async def test_same_key_with_another_body_is_422_and_creates_nothing(
    probe: httpx.AsyncClient, platform: Platform
) -> None:
    name, headers = f"p-{uuid.uuid4().hex[:8]}", {**platform.auth("feedback:write"), "Idempotency-Key": _key()}
    assert (await probe.post("/probes", json={"name": name}, headers=headers)).status_code == 201
    other = await probe.post("/probes", json={"name": name + "-other"}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"].endswith("idempotency-key-reused")
    assert await _count(platform, name + "-other") == 0


async def test_keys_are_scoped_to_the_token_subject(probe: httpx.AsyncClient, platform: Platform) -> None:
    name, key = f"p-{uuid.uuid4().hex[:8]}", _key()
    for sub in ("alice", "bob"):
        headers = {**platform.auth("feedback:write", sub=sub), "Idempotency-Key": key}
        assert (await probe.post("/probes", json={"name": name}, headers=headers)).status_code == 201
    assert await _count(platform, name) == 2


async def test_concurrent_duplicate_is_409_while_the_first_is_in_flight(
    probe: httpx.AsyncClient, platform: Platform
) -> None:
    name, headers = f"p-{uuid.uuid4().hex[:8]}", {**platform.auth("feedback:write"), "Idempotency-Key": _key()}
    body = {"name": name, "delay_seconds": 0.5}
    first = asyncio.create_task(probe.post("/probes", json=body, headers=headers))

    async def first_in_flight() -> bool:
        # Its transaction holds the key and waits out its delay, the stored-response lookup done.
        rows = await platform.fetch(
            "feedback",
            "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'idle in transaction' AND query LIKE '%FROM idempotency_key%'",
        )
        return bool(rows[0]["n"] > 0)

    await eventually(first_in_flight, every=0.01)
    second = await probe.post("/probes", json=body, headers=headers)
    assert second.status_code == 409
    assert second.json()["type"].endswith("idempotency-key-in-flight")
    assert (await first).status_code == 201
    replay = await probe.post("/probes", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert await _count(platform, name) == 1


async def test_failed_request_stores_no_key(probe: httpx.AsyncClient, platform: Platform) -> None:
    headers = {**platform.auth("feedback:write"), "Idempotency-Key": _key()}
    assert (await probe.post("/probes", json={"name": ""}, headers=headers)).status_code == 422
    name = f"p-{uuid.uuid4().hex[:8]}"
    assert (await probe.post("/probes", json={"name": name}, headers=headers)).status_code == 201


async def test_keys_are_scoped_to_the_token_department(probe: httpx.AsyncClient, platform: Platform) -> None:
    name, key = f"p-{uuid.uuid4().hex[:8]}", _key()
    for department in (None, "sales", "support"):
        headers = {**platform.auth("feedback:write", sub="alice", department=department), "Idempotency-Key": key}
        created = await probe.post("/probes", json={"name": name}, headers=headers)
        assert created.status_code == 201
        assert "idempotent-replayed" not in created.headers
    assert await _count(platform, name) == 3


async def test_a_replay_is_refused_to_a_token_without_the_scope(probe: httpx.AsyncClient, platform: Platform) -> None:
    name, key = f"p-{uuid.uuid4().hex[:8]}", _key()
    writer = {**platform.auth("feedback:write", sub="alice"), "Idempotency-Key": key}
    assert (await probe.post("/probes", json={"name": name}, headers=writer)).status_code == 201

    reader = {**platform.auth("feedback:read", sub="alice"), "Idempotency-Key": key}
    refused = await probe.post("/probes", json={"name": name}, headers=reader)

    assert refused.status_code == 403
    assert "idempotent-replayed" not in refused.headers
    assert "id" not in refused.json()
