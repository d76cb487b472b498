"""How many PostgreSQL connections one service replica opens (docs/SCALING.md, docker-compose.yml).

The design ceiling per replica is 2 x CF_DATABASE_pool_size + 1: the SQLAlchemy
pool (P, plus P in overflow), which every request and group-commit batch uses,
and the outbox relay's own connection (LISTEN and the leader's advisory lock).
This test measures a feedback replica on a database of its own, at rest and at
its peak under concurrent requests, counted from pg_stat_activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import asyncpg
import pytest
from sqlalchemy import event
from sqlalchemy.engine import make_url

from ops.platform import migrations_of
from services.feedback.app import create_app
from services.feedback.config import Settings
from shared.config import asyncpg_url
from shared.migrations import upgrade
from tests.feedback.conftest import complaint
from tests.support.platform import Platform, serve


async def connections(admin: asyncpg.Connection, database: str) -> int:
    count: int = await admin.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()", database
    )
    return count


@pytest.mark.parametrize("pool_size", [2, 5])  # docs/SCALING.md quotes both
async def test_one_replica_stays_within_two_pool_sizes_plus_one(platform: Platform, pool_size: int) -> None:
    database = f"conn_probe_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(platform.dsn("feedback"))
    await admin.execute(f'CREATE DATABASE "{database}"')
    url = make_url(asyncpg_url(platform.database_urls["feedback"])).set(database=database)
    rendered = url.render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade, migrations_of("feedback"), rendered)
        settings = platform.settings("feedback", database_url=rendered, database_pool_size=pool_size)
        assert isinstance(settings, Settings)
        app = create_app(settings)
        async with serve(app) as client:
            for _ in range(100):
                if app.state.runtime.relay is not None and await connections(admin, database) >= 1:
                    break
                await asyncio.sleep(0.1)
            at_start = await connections(admin, database)

            # What the replica holds open, counted where it opens and closes them: pg_stat_activity alone
            # also shows, for a moment, a backend whose client has already closed it (the pool closes an
            # overflow connection handed back to a full pool, and may open a new one at once).
            pool = app.state.runtime.engine.sync_engine
            open_now, open_peak = 0, 0

            def opened(*_: object) -> None:
                nonlocal open_now, open_peak
                open_now += 1
                open_peak = max(open_peak, open_now)

            def closed(*_: object) -> None:
                nonlocal open_now
                open_now -= 1

            event.listen(pool, "connect", opened)
            event.listen(pool, "close", closed)
            event.listen(pool, "close_detached", closed)
            open_now = pool.pool.checkedin() + pool.pool.checkedout()

            peak = 0
            sampling = True

            async def sample() -> None:
                nonlocal peak
                while sampling:
                    peak = max(peak, await connections(admin, database))
                    await asyncio.sleep(0.005)

            sampler = asyncio.create_task(sample())
            writer = platform.auth("feedback:write")
            reader = platform.auth("feedback:read")

            async def one(i: int) -> int:
                customer_id = f"customer-{uuid.uuid4().hex[:12]}"
                if i % 3 == 0:  # without a key: group commit, on a session of its own
                    response = await client.post("/v1/feedback", json=complaint(customer_id), headers=writer)
                elif i % 3 == 1:  # a keyed capture: in the request's transaction
                    headers = {**writer, "Idempotency-Key": uuid.uuid4().hex}
                    response = await client.post("/v1/feedback", json=complaint(customer_id), headers=headers)
                else:  # a read, on the request session
                    response = await client.get("/v1/feedback", params={"customer_id": customer_id}, headers=reader)
                return response.status_code

            for _ in range(5):
                statuses = await asyncio.gather(*(one(i) for i in range(60)))
                assert set(statuses) <= {200, 201}, statuses
            sampling = False
            await sampler
            after = await connections(admin, database)

        ceiling = 2 * pool_size + 1
        print(  # noqa: T201 (the figures docs/SCALING.md quotes; pytest -s shows them)
            f"\nconnections of one feedback replica, CF_DATABASE_POOL_SIZE={pool_size}: "
            f"at start {at_start}, peak under 60 concurrent requests {open_peak} + the relay's 1 "
            f"(pg_stat_activity's peak {peak}), after {after}, ceiling {ceiling}"
        )
        assert at_start >= 1  # the relay's own connection
        assert open_peak + 1 <= ceiling
        assert open_peak > pool_size  # the overflow was used: the ceiling was approached, not idle
    finally:
        with contextlib.suppress(Exception):
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", database)
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await admin.close()
