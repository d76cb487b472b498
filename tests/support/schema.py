"""How a migrated database differs from the models of some of its tables (Alembic's autogenerate comparison)."""

from __future__ import annotations

from collections.abc import Set
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shared.db import Base


def _table_of(difference: Any, tables: Set[str]) -> str | None:
    """The table an autogenerate difference is about (a tuple, or a list of tuples for columns)."""
    first = difference[0] if isinstance(difference, list) else difference
    for part in first[1:]:
        name = getattr(part, "table", None)
        name = getattr(name, "name", None) or getattr(part, "name", None)
        if isinstance(part, str) and part in tables:
            return part
        if isinstance(name, str) and name in tables:
            return name
    return None


async def schema_differences(database_url: str, tables: Set[str]) -> list[Any]:
    """What autogenerate would change in `tables` of the database at `database_url`; empty when they match."""
    engine = create_async_engine(database_url)

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [d for d in compare_metadata(context, Base.metadata) if _table_of(d, tables) is not None]

    try:
        async with engine.connect() as connection:
            return await connection.run_sync(differences)
    finally:
        await engine.dispose()
