"""The migrated feedback database matches the models, rollups and indexes included."""

from __future__ import annotations

from services.feedback import models
from tests.support.platform import Platform
from tests.support.schema import schema_differences

TABLES = {
    models.FeedbackRow.__tablename__,
    models.StatusChangeRow.__tablename__,
    models.ResolutionRow.__tablename__,
    models.ThemeRow.__tablename__,
    models.ThemeSpikeRow.__tablename__,
    models.day_count.name,
    models.theme_day_count.name,
    models.theme_day_total.name,
    models.CustomerYearRow.__tablename__,
}


async def test_migrations_create_the_tables_the_models_describe(platform: Platform) -> None:
    assert await schema_differences(platform.database_urls["feedback"], TABLES) == []
