"""The migrated database matches the models, and the catalogue's payloads are the REST representations."""

from __future__ import annotations

from services.expectations import models, schemas
from services.notifications.asyncapi import EVENT_PAYLOADS
from shared.catalogue import (
    EXPECTATION_CONFIRMED,
    EXPECTATION_GAP_IDENTIFIED,
    EXPECTATION_RECORDED,
    MEETING_RECORDED,
)
from tests.support.platform import Platform
from tests.support.schema import schema_differences

TABLES = {
    models.Question.__tablename__,
    models.Meeting.__tablename__,
    models.MeetingQuestion.__tablename__,
    models.Expectation.__tablename__,
    models.ExpectationVersion.__tablename__,
}


async def test_migrations_create_the_tables_the_models_describe(platform: Platform) -> None:
    assert await schema_differences(platform.database_urls["expectations"], TABLES) == []


def test_catalogue_payloads_are_the_rest_representations() -> None:
    assert EVENT_PAYLOADS[MEETING_RECORDED] is schemas.Meeting
    for spec in (EXPECTATION_RECORDED, EXPECTATION_CONFIRMED, EXPECTATION_GAP_IDENTIFIED):
        assert EVENT_PAYLOADS[spec] is schemas.Expectation
