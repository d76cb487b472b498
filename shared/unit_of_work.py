"""One transaction for a background job: `async with unit_of_work(sessionmaker) as session:`.

Requests get theirs from `DbSession` (shared/db.py); the consumer wrapper,
the scheduler, the webhook dispatcher and the jobs run at start take theirs
here. Repositories and services inside never commit.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


@contextlib.asynccontextmanager
async def unit_of_work(sessionmaker: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session in a transaction: committed when the block ends, rolled back if it raises (or is cancelled)."""
    async with sessionmaker() as session, session.begin():
        yield session
