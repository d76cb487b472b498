"""feedback_0006 on a database from before it: the rollups and the theme index count the existing feedback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from alembic import command

from ops.platform import migrations_of
from shared.migrations import alembic_config, upgrade
from tests.support.migrations import empty_database, run_sql
from tests.support.platform import Platform


@pytest.fixture
def fresh_database(platform: Platform) -> Iterator[str]:
    with empty_database(platform, "feedback") as url:
        yield url


def _insert(url: str, occurred_at: datetime, **fields: object) -> None:
    row = {
        "customer_kind": "external",
        "kind": "complaint",
        "channel": "email",
        "product": None,
        "rating_scale": None,
        "rating_value": None,
        "sentiment_label": "negative",
        "themes": [],
        **fields,
    }
    run_sql(
        url,
        "INSERT INTO feedback (id, customer_id, customer_kind, channel, kind, text, rating_scale, rating_value, "
        "product, occurred_at, sentiment_score, sentiment_label, sentiment_source, themes, created_at) "
        "VALUES ($1, 'c', $2, $3, $4, 'words', $5, $6, $7, $8, -0.5, $9, 'text', $10, $8)",
        uuid.uuid4(),
        row["customer_kind"],
        row["channel"],
        row["kind"],
        row["rating_scale"],
        row["rating_value"],
        row["product"],
        occurred_at,
        row["sentiment_label"],
        row["themes"],
    )


def test_existing_feedback_is_counted_into_the_rollups(fresh_database: str) -> None:
    upgrade(migrations_of("feedback"), fresh_database, "feedback_0005")
    # 23:30 in UTC-2 is the next UTC day: days are UTC days.
    late_evening = datetime.fromisoformat("2026-03-01T23:30:00-02:00")
    _insert(fresh_database, late_evening, themes=["delivery", "billing"])
    _insert(fresh_database, late_evening.astimezone(UTC), themes=["delivery"], sentiment_label="neutral")
    _insert(
        fresh_database, datetime(2026, 3, 1, 9, tzinfo=UTC), kind="survey_response", rating_scale="nps", rating_value=9
    )
    _insert(
        fresh_database, datetime(2026, 3, 1, 9, tzinfo=UTC), kind="survey_response", rating_scale="nps", rating_value=9
    )

    upgrade(migrations_of("feedback"), fresh_database, "feedback_0006")

    days = run_sql(
        fresh_database,
        "SELECT day::text, stripe, feedback, complaint, survey_response, promoters, detractors "
        "FROM feedback_day_count ORDER BY day",
    )
    assert [tuple(row) for row in days] == [("2026-03-01", 0, 2, 0, 2, 2, 0), ("2026-03-02", 0, 2, 2, 0, 0, 0)]
    for table in ("feedback_theme_day_count", "feedback_theme_day_total"):
        themes = run_sql(
            fresh_database, f"SELECT day::text, theme, feedback, complaint, negative FROM {table} ORDER BY theme"
        )
        assert [tuple(row) for row in themes] == [
            ("2026-03-02", "billing", 1, 1, 1),
            ("2026-03-02", "delivery", 2, 2, 1),
        ]
    years = run_sql(
        fresh_database,
        "SELECT year, customer_kind, position('1' in unhappy_days::text) AS unhappy, "
        "position('1' in happy_days::text) AS happy FROM feedback_customer_year",
    )
    # 2 March is day 61 of 2026 (unhappy: the complaints), 1 March day 60 (happy: the NPS 9).
    assert [tuple(row) for row in years] == [(2026, "external", 61, 60)]
    by_theme = run_sql(fresh_database, "SELECT theme, count(*) AS n FROM feedback_theme GROUP BY theme ORDER BY theme")
    assert [tuple(row) for row in by_theme] == [("billing", 1), ("delivery", 2)]

    command.downgrade(alembic_config(migrations_of("feedback"), fresh_database), "feedback_0005")
    tables = run_sql(fresh_database, "SELECT tablename FROM pg_tables WHERE tablename LIKE 'feedback%'")
    assert {row["tablename"] for row in tables} == {"feedback", "feedback_status_change", "feedback_resolution"}


def test_the_time_range_index_gains_the_list_order_and_comes_back_on_downgrade(fresh_database: str) -> None:
    def occurred_at_indexes() -> set[str]:
        rows = run_sql(
            fresh_database,
            "SELECT indexname FROM pg_indexes WHERE tablename = 'feedback' AND indexname LIKE 'ix_feedback_occurred%'",
        )
        return {row["indexname"] for row in rows}

    upgrade(migrations_of("feedback"), fresh_database, "feedback_0007")
    _insert(fresh_database, datetime(2026, 3, 1, 9, tzinfo=UTC))
    assert occurred_at_indexes() == {"ix_feedback_occurred_at"}

    upgrade(migrations_of("feedback"), fresh_database, "feedback_0008")
    assert occurred_at_indexes() == {"ix_feedback_occurred_at_created_at_id"}

    command.downgrade(alembic_config(migrations_of("feedback"), fresh_database), "feedback_0007")
    assert occurred_at_indexes() == {"ix_feedback_occurred_at"}
    assert run_sql(fresh_database, "SELECT count(*) AS n FROM feedback")[0]["n"] == 1
