"""Group commit on a real PostgreSQL: rows of concurrent callers in one statement (through a session of
the app's kind), each caller answered for its own row only, nothing written twice."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.errors import is_unavailable
from shared.group_commit import GroupCommit
from tests.support.platform import Platform, sessions_on


@pytest_asyncio.fixture(loop_scope="session")
async def table(platform: Platform) -> AsyncIterator[str]:
    name = f"group_commit_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(platform.dsn("feedback"))
    try:
        await conn.execute(f"CREATE TABLE {name} (id uuid PRIMARY KEY, n int NOT NULL CHECK (n >= 0))")
        yield name
    finally:
        await conn.execute("SET lock_timeout = '5s'")
        await conn.execute(f"DROP TABLE {name}")
        await conn.close()


@pytest_asyncio.fixture(loop_scope="session")
async def dsn(platform: Platform) -> str:
    return platform.dsn("feedback")


@pytest_asyncio.fixture(loop_scope="session")
async def pool(dsn: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await asyncpg.create_pool(dsn, min_size=0, max_size=4)
    try:
        yield pool
    finally:
        # A test that failed may leave a write in flight; it must not hang the suite.
        try:
            await asyncio.wait_for(pool.close(), 5)
        except TimeoutError:
            pool.terminate()


@pytest_asyncio.fixture(loop_scope="session")
async def sessions(platform: Platform) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    async with sessions_on(platform.database_urls["feedback"]) as made:
        yield made


Row = tuple[uuid.UUID, int]


def inserts_into(table: str, sessions: async_sessionmaker[AsyncSession], *, max_in_flight: int = 2) -> GroupCommit[Row]:
    """Rows written as the feedback repository writes captures: one statement, its columns as arrays."""
    statement = text(f"INSERT INTO {table} (id, n) SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:ns AS int[]))")

    async def write_batch(rows: list[Row]) -> None:
        async with sessions() as session:
            await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})
            await session.execute(statement, {"ids": [row_id for row_id, _ in rows], "ns": [n for _, n in rows]})

    return GroupCommit(write_batch, alone_on=(DataError, IntegrityError), max_in_flight=max_in_flight)


async def stored(pool: asyncpg.Pool, table: str) -> dict[uuid.UUID, int]:
    return {row["id"]: row["n"] for row in await pool.fetch(f"SELECT id, n FROM {table}")}


class TableLock:
    """Holds `table` in SHARE mode from another connection: every insert waits until `release`."""

    def __init__(self, dsn: str, table: str) -> None:
        self._dsn, self._table = dsn, table

    async def __aenter__(self) -> TableLock:
        self._conn = await asyncpg.connect(self._dsn)
        self._transaction = self._conn.transaction()
        await self._transaction.start()
        self._held = True
        await self._conn.execute(f"LOCK TABLE {self._table} IN SHARE MODE")
        return self

    async def waiting_inserts(self) -> list[int]:
        """Backends whose insert waits on the lock."""
        # Inside our transaction the activity view is a snapshot: cleared, it is read afresh.
        await self._conn.execute("SELECT pg_stat_clear_snapshot()")
        rows = await self._conn.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return [row["pid"] for row in rows]

    async def one_waiting_insert(self) -> int:
        for _ in range(200):
            pids = await self.waiting_inserts()
            if pids:
                [pid] = pids
                return pid
            await asyncio.sleep(0.02)
        raise AssertionError("no insert came to wait on the lock")

    async def terminate(self, pid: int) -> None:
        await self._conn.execute("SELECT pg_terminate_backend($1)", pid)

    async def release(self) -> None:
        if self._held:
            self._held = False
            await self._transaction.rollback()

    async def __aexit__(self, *_: object) -> None:
        await self.release()
        await self._conn.close()


async def test_concurrent_writes_share_statements_and_each_returns_with_its_row_committed(
    dsn: str, pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    inserts = inserts_into(table, sessions)
    checker = await asyncpg.create_pool(dsn, min_size=0, max_size=4)
    seen_at_return: list[bool] = []

    async def write(n: int) -> uuid.UUID:
        row_id = uuid.uuid4()
        await inserts.write((row_id, n))
        # Visible to another connection the moment the caller is answered: committed, not queued.
        seen_at_return.append(await checker.fetchval(f"SELECT count(*) FROM {table} WHERE id = $1", row_id) == 1)
        return row_id

    try:
        ids = await asyncio.gather(*(write(n) for n in range(300)))
    finally:
        await checker.close()

    assert await stored(pool, table) == {row_id: n for n, row_id in enumerate(ids)}
    assert all(seen_at_return)
    assert len(seen_at_return) == 300
    # Many callers per statement, never more rows than allowed in one.
    assert 300 / 64 <= inserts.batches_written < 100


async def test_a_write_alone_is_sent_at_once(
    pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    inserts = inserts_into(table, sessions)
    row_id = uuid.uuid4()
    await inserts.write((row_id, 7))
    assert await stored(pool, table) == {row_id: 7}
    assert inserts.batches_written == 1


async def test_a_row_that_postgresql_rejects_fails_only_its_own_caller(
    dsn: str, pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    inserts = inserts_into(table, sessions, max_in_flight=1)
    good = [uuid.uuid4() for _ in range(9)]
    bad = uuid.uuid4()
    async with TableLock(dsn, table) as lock:
        first = asyncio.create_task(inserts.write((uuid.uuid4(), 0)))
        await lock.one_waiting_insert()
        # These queue behind the one in flight and go as one statement, the bad row among them.
        queued = [asyncio.create_task(inserts.write((row_id, 1))) for row_id in good[:5]]
        queued.append(asyncio.create_task(inserts.write((bad, -1))))
        queued += [asyncio.create_task(inserts.write((row_id, 1))) for row_id in good[5:]]
        await asyncio.sleep(0.1)
        await lock.release()
        await first
        results = await asyncio.gather(*queued, return_exceptions=True)

    [rejected] = [r for r in results if r is not None]
    assert isinstance(rejected, IntegrityError)
    assert rejected.orig is not None
    assert isinstance(rejected.orig.__cause__, asyncpg.CheckViolationError)
    assert results.index(rejected) == 5
    rows = await stored(pool, table)
    assert bad not in rows
    assert set(good) <= set(rows)
    assert len(rows) == 10


async def test_a_caller_cancelled_before_its_row_is_sent_writes_nothing(
    dsn: str, pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    inserts = inserts_into(table, sessions, max_in_flight=1)
    kept, dropped = uuid.uuid4(), uuid.uuid4()
    async with TableLock(dsn, table) as lock:
        first = asyncio.create_task(inserts.write((kept, 1)))
        await lock.one_waiting_insert()
        waiting = asyncio.create_task(inserts.write((dropped, 2)))
        await asyncio.sleep(0.05)
        waiting.cancel()
        await lock.release()
        await first
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.sleep(0.2)
    assert await stored(pool, table) == {kept: 1}
    assert inserts.batches_written == 1


async def test_a_batch_whose_connection_is_lost_is_not_written_again(
    dsn: str, pool: asyncpg.Pool, sessions: async_sessionmaker[AsyncSession], table: str
) -> None:
    inserts = inserts_into(table, sessions, max_in_flight=1)
    async with TableLock(dsn, table) as lock:
        first = asyncio.create_task(inserts.write((uuid.uuid4(), 1)))
        await lock.one_waiting_insert()
        batch = [asyncio.create_task(inserts.write((uuid.uuid4(), n))) for n in range(5)]
        await asyncio.sleep(0.05)
        # The lone first write loses its connection; then the batch of five, sent next, loses its own.
        await lock.terminate(await lock.one_waiting_insert())
        with pytest.raises(DBAPIError) as lost:
            await first
        assert is_unavailable(lost.value), lost.value
        await lock.terminate(await lock.one_waiting_insert())
        results = await asyncio.gather(*batch, return_exceptions=True)
    # Nothing is sent again, as for a lost statement, which may have committed: each caller hears of it.
    assert all(isinstance(result, DBAPIError) and is_unavailable(result) for result in results), results
    await asyncio.sleep(0.2)
    assert await stored(pool, table) == {}
    assert inserts.batches_written == 0
