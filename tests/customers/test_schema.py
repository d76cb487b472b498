"""The migrated database matches the models, and `customer.updated` carries the REST representation."""

from __future__ import annotations

from services.customers import models, schemas
from services.notifications.asyncapi import EVENT_PAYLOADS
from shared.catalogue import CUSTOMER_HEALTH_CHANGED, CUSTOMER_UPDATED
from tests.support.platform import Platform
from tests.support.schema import schema_differences

TABLES = {
    models.Customer.__tablename__,
    models.TimelineEntry.__tablename__,
    models.CustomerItem.__tablename__,
    models.BankQuestion.__tablename__,
}


async def test_migrations_create_the_tables_the_models_describe(platform: Platform) -> None:
    assert await schema_differences(platform.database_urls["customers"], TABLES) == []


def test_customer_updated_carries_the_customer_as_get_returns_it() -> None:
    assert CUSTOMER_UPDATED.topic == "customers.events"
    assert EVENT_PAYLOADS[CUSTOMER_UPDATED] is schemas.Customer


def test_customer_health_changed_carries_the_customer_and_the_band_it_left() -> None:
    assert CUSTOMER_HEALTH_CHANGED.topic == "customers.events"
    assert EVENT_PAYLOADS[CUSTOMER_HEALTH_CHANGED] is schemas.CustomerHealthChanged
    assert set(schemas.CustomerHealthChanged.model_fields) == {*schemas.Customer.model_fields, "previous_band"}
