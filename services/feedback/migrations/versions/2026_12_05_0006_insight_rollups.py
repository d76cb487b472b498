"""Insight at volume (issue 18): day rollups kept in the capture's own statement, feedback by theme, and the
indexes of the new filters.

- `feedback_day_count`: feedback per UTC day and every dimension the metrics filter or count by (customer kind,
  kind, channel, product, rating scale and value). Metrics read whole days here and only the partial edge days
  of an arbitrary `[since, until)` from `feedback` (through `ix_feedback_occurred_at`).
- `feedback_theme_day_count`: the same per theme, with the sentiment's negativity (theme figures, theme trends).
- `feedback_theme`: one row per feedback and theme, keyed `(theme, created_at, feedback_id)`, so the list's
  `theme` filter walks one index newest first (a GIN index on `feedback.themes` would find every row of a theme,
  a fifth of the table for a common one, and sort them before the first page).

Each rollup row is one of 4 stripes of its key, the stripe chosen by the writing connection (its backend's
pid): two capture statements in flight on two connections then rarely upsert the same row, so one
does not wait for the other's commit (group commit keeps two statements in flight). Reads sum the stripes.

Nothing updates or deletes feedback's counted columns (a status move changes none of them), so the rollups
change only when feedback is inserted. The upgrade counts the existing feedback into them.

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

_DAY = "CAST(timezone('UTC', occurred_at) AS date)"


def upgrade() -> None:
    op.create_table(
        "feedback_day_count",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("rating_scale", sa.Text(), nullable=True),
        sa.Column("rating_value", sa.SmallInteger(), nullable=True),
        sa.Column("feedback", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ux_feedback_day_count",
        "feedback_day_count",
        ["day", "stripe", "customer_kind", "kind", "channel", "product", "rating_scale", "rating_value"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.create_table(
        "feedback_theme_day_count",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("stripe", sa.SmallInteger(), nullable=False),
        sa.Column("theme", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.Column("feedback", sa.BigInteger(), nullable=False),
    )
    op.create_index(
        "ux_feedback_theme_day_count",
        "feedback_theme_day_count",
        ["day", "stripe", "theme", "customer_kind", "kind", "channel", "product", "negative"],
        unique=True,
        postgresql_nulls_not_distinct=True,
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

    op.execute(
        f"""
        INSERT INTO feedback_day_count (day, stripe, customer_kind, kind, channel, product, rating_scale,
            rating_value, feedback)
        SELECT {_DAY}, 0, customer_kind, kind, channel, product, rating_scale, rating_value, count(*)
        FROM feedback
        GROUP BY 1, 3, 4, 5, 6, 7, 8
        """
    )
    op.execute(
        f"""
        INSERT INTO feedback_theme_day_count (day, stripe, theme, customer_kind, kind, channel, product, negative,
            feedback)
        SELECT {_DAY}, 0, theme, customer_kind, kind, channel, product, sentiment_label = 'negative', count(*)
        FROM feedback, unnest(themes) AS theme
        GROUP BY 1, 3, 4, 5, 6, 7, 8
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
    op.drop_table("feedback_theme_day_count")
    op.drop_table("feedback_day_count")
