"""Insight at volume (issue 18): day rollups kept in the capture's own statement, feedback by theme, and the
indexes of the new filters.

A rollup row is keyed by a UTC day and the dimensions the reads filter by; what the figures count (kinds,
rating bands, negative sentiment) are its columns, not more keys, so a year is at most a few hundred thousand
rows however the kinds and ratings spread:

- `feedback_day_count` (day, customer kind, channel, product): feedback, each kind, NPS promoters, passives
  and detractors, CSAT responses and satisfied ones, CES responses and their summed effort. Every metric but
  the distinct customers of word of mouth is a sum over it.
- `feedback_theme_day_count` (day, theme, customer kind, channel, product) and `feedback_theme_day_total` (day,
  theme, customer kind): feedback, each kind, negative sentiment. Theme figures filtered by channel or product
  read the first, theme trends and unfiltered theme figures the second (a few thousand rows a year).
- `feedback_customer_year` (year, customer kind, customer): the UTC days of the year on which the customer gave
  feedback telling of an unhappy customer, and of a happy one, as two 366-bit strings. Word of mouth's distinct
  customers over any whole days are the rows whose bits meet the range's mask: one row per customer a year,
  however much feedback they gave.
- `feedback_theme`: one row per feedback and theme, keyed `(theme, created_at, feedback_id)`, so the list's
  `theme` filter walks one index newest first (a GIN index on `feedback.themes` would find every row of a theme,
  a large share of the table for a common one, and sort them before the first page).

Reads take whole days from the rollups and the partial days at a range's edges from `feedback` through
`ix_feedback_occurred_at` (instants stay exact); a customer's figures come from `feedback` through the new
`(customer_id, occurred_at)` index.

Each rollup key has 4 stripes, the stripe chosen by the writing connection (its backend's pid): two capture
statements in flight on two connections then rarely upsert the same row, so one does not wait for the other's
commit (group commit keeps two statements in flight). Reads sum the stripes. The upgrade's backfill writes
stripe 0.

Nothing updates or deletes feedback's counted columns (a status move changes none of them), so the rollups
change only when feedback is inserted.

Revision ID: feedback_0006
Revises: feedback_0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "feedback_0006"
down_revision: str | None = "feedback_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = ("complaint", "compliment", "suggestion", "question", "survey_response")
_DAY = "CAST(timezone('UTC', occurred_at) AS date)"
# What the rollups count, as aggregates over feedback rows (the capture statement adds the same).
_FIGURES = {
    "feedback": "count(*)",
    **{kind: f"count(*) FILTER (WHERE kind = '{kind}')" for kind in KINDS},
    "promoters": "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value >= 9)",
    "passives": "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value BETWEEN 7 AND 8)",
    "detractors": "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value <= 6)",
    "csat_responses": "count(*) FILTER (WHERE rating_scale = 'csat')",
    "csat_satisfied": "count(*) FILTER (WHERE rating_scale = 'csat' AND rating_value >= 4)",
    "ces_responses": "count(*) FILTER (WHERE rating_scale = 'ces')",
    "ces_effort": "coalesce(sum(rating_value) FILTER (WHERE rating_scale = 'ces'), 0)",
}
# Feedback telling of an unhappy customer, and of a happy one (word of mouth).
_UNHAPPY = (
    "(kind = 'complaint' OR (rating_scale = 'nps' AND rating_value <= 6) OR (rating_scale = 'csat' AND "
    "rating_value <= 2) OR (rating_scale = 'ces' AND rating_value >= 5))"
)
_HAPPY = (
    "(kind = 'compliment' OR (rating_scale = 'nps' AND rating_value >= 9) OR (rating_scale = 'csat' AND "
    "rating_value >= 4) OR (rating_scale = 'ces' AND rating_value <= 2))"
)
_THEME_FIGURES = {
    "feedback": "count(*)",
    **{kind: f"count(*) FILTER (WHERE kind = '{kind}')" for kind in KINDS},
    "negative": "count(*) FILTER (WHERE sentiment_label = 'negative')",
}


def _rollup(table: str, keys: list[sa.Column[str]], figures: Sequence[str]) -> None:
    names = [key.name for key in keys]
    op.create_table(
        table,
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        *keys,
        *(sa.Column(name, sa.BigInteger(), nullable=False) for name in figures),
    )
    op.create_index(f"ux_{table}", table, ["day", "stripe", *names], unique=True, postgresql_nulls_not_distinct=True)


def _backfill(table: str, keys: Sequence[str], figures: dict[str, str], source: str) -> None:
    positions = ", ".join(str(n) for n in range(1, len(keys) + 2))
    op.execute(
        f"""
        INSERT INTO {table} (day, {", ".join(keys)}, stripe, {", ".join(figures)})
        SELECT {_DAY}, {", ".join(keys)}, 0, {", ".join(figures.values())}
        FROM {source}
        GROUP BY {positions}
        """
    )


def upgrade() -> None:
    def customer_kind() -> sa.Column[str]:
        return sa.Column("customer_kind", sa.Text(), nullable=False)

    def theme() -> sa.Column[str]:
        return sa.Column("theme", sa.Text(), nullable=False)

    def channel_and_product() -> list[sa.Column[str]]:
        return [sa.Column("channel", sa.Text(), nullable=False), sa.Column("product", sa.Text(), nullable=True)]

    _rollup("feedback_day_count", [customer_kind(), *channel_and_product()], list(_FIGURES))
    _rollup("feedback_theme_day_count", [theme(), customer_kind(), *channel_and_product()], list(_THEME_FIGURES))
    _rollup("feedback_theme_day_total", [theme(), customer_kind()], list(_THEME_FIGURES))
    op.create_table(
        "feedback_customer_year",
        sa.Column("year", sa.SmallInteger(), nullable=False),
        customer_kind(),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("unhappy_days", postgresql.BIT(366), nullable=False),
        sa.Column("happy_days", postgresql.BIT(366), nullable=False),
        sa.PrimaryKeyConstraint("year", "customer_kind", "customer_id", name=op.f("pk_feedback_customer_year")),
    )
    op.create_table(
        "feedback_theme",
        sa.Column("theme", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("feedback_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.PrimaryKeyConstraint("theme", "created_at", "feedback_id", name=op.f("pk_feedback_theme")),
    )
    op.create_index("ix_feedback_customer_kind_created_at_id", "feedback", ["customer_kind", "created_at", "id"])
    op.create_index("ix_feedback_customer_id_occurred_at", "feedback", ["customer_id", "occurred_at"])

    _backfill("feedback_day_count", ["customer_kind", "channel", "product"], _FIGURES, "feedback")
    themed = "feedback, unnest(themes) AS theme"
    _backfill("feedback_theme_day_count", ["theme", "customer_kind", "channel", "product"], _THEME_FIGURES, themed)
    _backfill("feedback_theme_day_total", ["theme", "customer_kind"], _THEME_FIGURES, themed)
    day_bit = f"set_bit(CAST(B'0' AS bit(366)), CAST(extract(doy FROM {_DAY}) AS int) - 1, 1)"
    op.execute(
        f"""
        INSERT INTO feedback_customer_year (year, customer_kind, customer_id, unhappy_days, happy_days)
        SELECT CAST(extract(year FROM {_DAY}) AS int), customer_kind, customer_id,
            coalesce(bit_or({day_bit}) FILTER (WHERE {_UNHAPPY}), CAST(B'0' AS bit(366))),
            coalesce(bit_or({day_bit}) FILTER (WHERE {_HAPPY}), CAST(B'0' AS bit(366)))
        FROM feedback WHERE {_UNHAPPY} OR {_HAPPY}
        GROUP BY 1, 2, 3
        """
    )
    op.execute(
        """
        INSERT INTO feedback_theme (theme, created_at, feedback_id)
        SELECT DISTINCT theme, created_at, id FROM feedback, unnest(themes) AS theme
        """
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_customer_id_occurred_at", table_name="feedback")
    op.drop_index("ix_feedback_customer_kind_created_at_id", table_name="feedback")
    op.drop_table("feedback_theme")
    op.drop_table("feedback_customer_year")
    op.drop_table("feedback_theme_day_total")
    op.drop_table("feedback_theme_day_count")
    op.drop_table("feedback_day_count")
