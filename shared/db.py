"""Database access: the async engine, the request session, the declarative base.

A transaction begins and ends in two places only: `session_dependency` (one
per request: commit on success, roll back on error) and the consumer wrapper.
Repositories and services never commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, TypeAlias

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from shared.config import asyncpg_url

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_metadata() -> MetaData:
    return MetaData(naming_convention=NAMING_CONVENTION)


class Base(DeclarativeBase):
    """Declarative base; each service keeps its own tables in its own database."""

    metadata = new_metadata()


def create_engine(database_url: str, *, pool_size: int = 10, **kwargs: Any) -> AsyncEngine:
    engine = create_async_engine(
        asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"command_timeout": 30, "timeout": 5},
        **kwargs,
    )
    event.listen(engine.sync_engine, "checkout", _replace_if_closed)
    return engine


def _replace_if_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Never hand out a connection the server has closed (a restart, a failover).

    Statements sent straight to the driver (`driver_connection`) bypass
    SQLAlchemy's disconnect detection, so without this check a pool kept its
    dead connections after PostgreSQL restarted, and every later transaction
    failed (tests/shared/test_consumer_database_outage.py). The check costs no
    round trip; on `DisconnectionError` the pool connects afresh.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("PostgreSQL closed this pooled connection")


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg takes, from a database URL in any form `asyncpg_url` accepts."""
    url = make_url(asyncpg_url(database_url)).set(drivername="postgresql")
    if "ssl" in url.query:
        # In a DSN, asyncpg reads libpq's name for it.
        query = {key: value for key, value in url.query.items() if key != "ssl"}
        url = url.set(query={**query, "sslmode": url.query["ssl"]})
    return url.render_as_string(hide_password=False)


# An asyncpg connection (asyncpg ships no type hints).
DriverConnection: TypeAlias = Any
# What a request writes through: the ORM session, or a driver connection in a transaction.
UnitOfWork: TypeAlias = AsyncSession | DriverConnection


async def driver_connection(unit: UnitOfWork) -> DriverConnection:
    """The asyncpg connection of `unit`, inside its transaction.

    For hot paths: a statement sent here skips SQLAlchemy's execution machinery
    (about 120 µs of CPU per statement) yet commits or rolls back with the session.
    """
    if not isinstance(unit, AsyncSession):
        return unit
    connection = await unit.connection()
    assert connection.sync_connection is not None
    adapted: Any = connection.sync_connection.connection.dbapi_connection
    # SQLAlchemy's asyncpg adapter sends BEGIN lazily, before its own first
    # statement; begin now so that statements sent to the driver are inside it.
    if adapted._transaction is None:
        await adapted._start_transaction()
    return adapted.driver_connection


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request: committed on success, rolled back on error."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def create_driver_pool(database_url: str, *, pool_size: int = 10) -> asyncpg.Pool:
    """The service's asyncpg pool for hot paths; connections open on first use.

    Bounded like the engine's pool (`pool_size` plus as many in overflow).

    Requests on it never leave session state behind (no SET, LISTEN or
    session-level advisory lock: the idempotency lock is transaction-scoped),
    so a connection goes back to the pool without asyncpg's reset query, one
    round trip per request saved. An open transaction is still rolled back.
    """
    return await asyncpg.create_pool(
        asyncpg_dsn(database_url),
        min_size=0,
        max_size=2 * pool_size,
        command_timeout=30,
        timeout=5,
        reset=_nothing_to_reset,
    )


async def _nothing_to_reset(_: DriverConnection) -> None:
    return None


@contextlib.asynccontextmanager
async def pooled_connection(request: Request) -> AsyncIterator[DriverConnection]:
    """A driver connection from the service's pool, in a transaction, for hot paths.

    The same promise as `session_dependency` (committed on success, rolled
    back on error, before the response) without the ORM session, whose
    lifecycle costs about 200 µs of CPU per request (bench/feedback_ingest.py).
    A request whose only write is one statement, atomic on its own, can skip
    the transaction: `shared.group_commit` writes such rows on the pool.
    """
    pool: asyncpg.Pool = request.app.state.runtime.pool
    async with pool.acquire() as connection, connection.transaction():
        yield connection


async def connection_dependency(request: Request) -> AsyncIterator[DriverConnection]:
    """One transaction per request on a pooled driver connection."""
    async with pooled_connection(request) as connection:
        yield connection


# scope="function": the commit happens before the response is sent, so a client
# never sees a 201 for a transaction that failed to commit.
DbSession = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
DbConnection = Annotated[DriverConnection, Depends(connection_dependency, scope="function")]
