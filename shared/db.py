"""Database access: the async engine, the request session, the declarative base.

A transaction begins and ends in three places only: `request_session` (one
per request: commit on success, roll back on error), the consumer wrapper, and
`unit_of_work` (shared/unit_of_work.py) for every other background job; a
group-commit batch is one statement, atomic on its own, sent in autocommit.
Repositories and services never commit. Every statement goes through an
`AsyncSession` (ORM, Core or `text()`); only LISTEN holds a connection of
its own (shared/listen.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url
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
    """The service's engine; a connection the server closed (a restart, a failover) is found by
    SQLAlchemy's disconnect detection on its first failed statement, and the whole pool is then replaced."""
    return create_async_engine(
        asyncpg_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"command_timeout": 30, "timeout": 5},
        **kwargs,
    )


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def create_read_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions whose statements each run on their own (autocommit): no `BEGIN` and `COMMIT` round trips.

    For requests that only read. Under PostgreSQL's READ COMMITTED each statement of a transaction sees
    a snapshot of its own anyway, so leaving the transaction out changes no answer; the connection
    comes from the same pool."""
    return async_sessionmaker(
        engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False, autoflush=False
    )


def asyncpg_dsn(database_url: str) -> str:
    """The plain `postgresql://` DSN asyncpg takes, from a database URL in any form `asyncpg_url` accepts."""
    url = make_url(asyncpg_url(database_url)).set(drivername="postgresql")
    if "ssl" in url.query:
        # In a DSN, asyncpg reads libpq's name for it.
        query = {key: value for key, value in url.query.items() if key != "ssl"}
        url = url.set(query={**query, "sslmode": url.query["ssl"]})
    return url.render_as_string(hide_password=False)


@asynccontextmanager
async def request_session(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A request's session: committed on success, rolled back on error."""
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            if session.in_transaction():  # else it has nothing to write, and commits without a round trip
                await session.commit()


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """One session per request (`request_session`)."""
    async with request_session(request.app.state.sessionmaker) as session:
        yield session


# scope="function": the commit happens before the response is sent, so a client
# never sees a 201 for a transaction that failed to commit.
DbSession = Annotated[AsyncSession, Depends(session_dependency, scope="function")]


async def read_sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    """The app's sessions for reading (`create_read_sessionmaker`)."""
    sessionmaker: async_sessionmaker[AsyncSession] = request.app.state.read_sessionmaker
    return sessionmaker


# For a busy route that only reads: it opens its session where it reads (`async with sessions() as session`),
# with no transaction and no dependency to tear down after the response; what it wrote would be committed
# statement by statement.
ReadSessions = Annotated[async_sessionmaker[AsyncSession], Depends(read_sessions)]
