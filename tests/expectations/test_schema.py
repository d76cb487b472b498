"""The migrated database matches the models, and the catalogue's payloads are the REST representations."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from services.expectations import models, schemas
from services.notifications.asyncapi import EVENT_PAYLOADS
from shared.catalogue import (
    EXPECTATION_CONFIRMED,
    EXPECTATION_GAP_IDENTIFIED,
    EXPECTATION_RECORDED,
    MEETING_RECORDED,
)
from shared.db import Base
from tests.support.platform import Platform

TABLES = {
    models.Question.__tablename__,
    models.Meeting.__tablename__,
    models.MeetingQuestion.__tablename__,
    models.Expectation.__tablename__,
    models.ExpectationVersion.__tablename__,
}


def _table_of(difference: Any) -> str | None:
    """The table an autogenerate difference is about (a tuple, or a list of tuples for columns)."""
    first = difference[0] if isinstance(difference, list) else difference
    for part in first[1:]:
        name = getattr(part, "table", None)
        name = getattr(name, "name", None) or getattr(part, "name", None)
        if isinstance(part, str) and part in TABLES:
            return part
        if isinstance(name, str) and name in TABLES:
            return name
    return None


async def test_migrations_create_the_tables_the_models_describe(platform: Platform) -> None:
    engine = create_async_engine(platform.database_urls["expectations"])

    def differences(connection: Connection) -> list[Any]:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return [d for d in compare_metadata(context, Base.metadata) if _table_of(d) in TABLES]

    try:
        async with engine.connect() as connection:
            assert await connection.run_sync(differences) == []
    finally:
        await engine.dispose()


def test_catalogue_payloads_are_the_rest_representations() -> None:
    assert EVENT_PAYLOADS[MEETING_RECORDED] is schemas.Meeting
    for spec in (EXPECTATION_RECORDED, EXPECTATION_CONFIRMED, EXPECTATION_GAP_IDENTIFIED):
        assert EVENT_PAYLOADS[spec] is schemas.Expectation
