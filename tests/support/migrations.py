"""A database of its own for migration tests: empty, on the suite's server, dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import asyncpg
from sqlalchemy.engine import make_url

from shared.db import asyncpg_dsn
from tests.support.platform import Platform


@contextlib.contextmanager
def empty_database(platform: Platform, service: str) -> Iterator[str]:
    """The URL of a new, empty database on `service`'s server, for migrating step by step."""
    url = make_url(platform.database_urls[service])
    name = f"migrate_{uuid.uuid4().hex[:8]}"
    server = asyncpg_dsn(url.set(database="postgres").render_as_string(hide_password=False))
    asyncio.run(_fetch(server, f'CREATE DATABASE "{name}"'))
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_fetch(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run_sql(url: str, sql: str, *args: object) -> list[asyncpg.Record]:
    """Run one statement on the database at `url` (from synchronous test code); its rows."""
    return asyncio.run(_fetch(asyncpg_dsn(url), sql, *args))


async def _fetch(dsn: str, sql: str, *args: object) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()
