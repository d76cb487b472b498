"""Tables of the feedback service (its own database)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    SmallInteger,
    Table,
    Text,
    func,
)
from sqlalchemy import text as sql
from sqlalchemy.dialects.postgresql import ARRAY, BIT, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base


class FeedbackRow(Base):
    __tablename__ = "feedback"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    customer_kind: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    text: Mapped[str | None] = mapped_column(Text)
    rating_scale: Mapped[str | None] = mapped_column(Text)
    rating_value: Mapped[int | None] = mapped_column(SmallInteger)
    product: Mapped[str | None] = mapped_column(Text)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=sql("'{}'"))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    status: Mapped[str] = mapped_column(Text, server_default=sql("'new'"))
    sentiment_score: Mapped[float] = mapped_column(Float)
    sentiment_label: Mapped[str] = mapped_column(Text)
    sentiment_source: Mapped[str] = mapped_column(Text)
    themes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=sql("'{}'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (
        CheckConstraint("(rating_scale IS NULL) = (rating_value IS NULL)", name="rating_complete"),
        CheckConstraint("text IS NOT NULL OR rating_scale IS NOT NULL", name="text_or_rating"),
        # Newest first, optionally narrowed by one filter: each list filter has its index.
        Index("ix_feedback_created_at_id", "created_at", "id"),
        Index("ix_feedback_customer_id_created_at_id", "customer_id", "created_at", "id"),
        Index("ix_feedback_kind_created_at_id", "kind", "created_at", "id"),
        Index("ix_feedback_channel_created_at_id", "channel", "created_at", "id"),
        Index("ix_feedback_status_created_at_id", "status", "created_at", "id"),
        Index("ix_feedback_product_created_at_id", "product", "created_at", "id"),
        Index("ix_feedback_customer_kind_created_at_id", "customer_kind", "created_at", "id"),
        # The metrics' edge days, a customer's figures and a list's time range: the rows of a time range, not the
        # table; a list's page is picked from the index's (created_at, id) before any row is read.
        Index("ix_feedback_occurred_at_created_at_id", "occurred_at", "created_at", "id"),
        Index("ix_feedback_customer_id_occurred_at", "customer_id", "occurred_at"),
        Index("ix_feedback_tags", "tags", postgresql_using="gin"),
    )


class StatusChangeRow(Base):
    __tablename__ = "feedback_status_change"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    feedback_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("feedback.id", ondelete="CASCADE"))
    from_status: Mapped[str] = mapped_column(Text)
    to_status: Mapped[str] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    changed_by: Mapped[str] = mapped_column(Text)
    changed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())

    __table_args__ = (Index("ix_feedback_status_change_feedback_id_id", "feedback_id", "id"),)


class ResolutionRow(Base):
    """One move to `resolved`: the verdict link it gave the customer, and the verdict once given."""

    __tablename__ = "feedback_resolution"

    # Random, and the only id a verdict link carries: the link names no feedback.
    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    feedback_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("feedback.id", ondelete="CASCADE"))
    resolved_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted: Mapped[bool | None] = mapped_column(Boolean)
    fairness: Mapped[int | None] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    given_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    given_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        CheckConstraint(
            "(accepted IS NULL) = (given_at IS NULL) AND (accepted IS NULL) = (given_by IS NULL)",
            name="verdict_complete",
        ),
        CheckConstraint("given_by IS NULL OR given_by IN ('customer', 'staff')", name="given_by"),
        CheckConstraint("fairness IS NULL OR fairness BETWEEN 1 AND 5", name="fairness"),
        Index("ix_feedback_resolution_feedback_id_resolved_at", "feedback_id", "resolved_at"),
    )


class CustomerYearRow(Base):
    """The UTC days of a year on which a customer gave feedback telling of an unhappy customer, and of a happy
    one (bit n: day n + 1 of the year): word of mouth's distinct customers over whole days, one row a customer."""

    __tablename__ = "feedback_customer_year"

    year: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    customer_kind: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    unhappy_days: Mapped[str] = mapped_column(BIT(366))
    happy_days: Mapped[str] = mapped_column(BIT(366))


class ThemeRow(Base):
    """A feedback under one of its themes: the list's `theme` filter walks `(theme, created_at, feedback_id)`."""

    __tablename__ = "feedback_theme"

    theme: Mapped[str] = mapped_column(Text, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    feedback_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)


KINDS = ("complaint", "compliment", "suggestion", "question", "survey_response")
# What a day rollup row counts: its feedback, each kind, and (feedback_day_count) the rating bands the metrics
# use; `ces_effort` is the sum of the CES values. See repository.py for the expressions.
DAY_FIGURES = (
    "feedback",
    *KINDS,
    "promoters",
    "passives",
    "detractors",
    "csat_responses",
    "csat_satisfied",
    "ces_responses",
    "ces_effort",
)
THEME_FIGURES = ("feedback", *KINDS, "negative")


def _rollup(name: str, keys: list[Column[str]], figures: tuple[str, ...]) -> Table:
    """A day rollup: per UTC day of `occurred_at`, stripe and `keys`, the counts `figures` name.

    Written only in the capture's own statement (repository.py): nothing counted changes after capture. No key
    of its own, only a unique index (NULLS NOT DISTINCT: product may be null). A key has 4 stripes (by the
    writing connection's backend) so concurrent captures rarely wait on one row; reads sum them.
    """
    return Table(
        name,
        Base.metadata,
        Column("day", Date, nullable=False),
        Column("stripe", SmallInteger, nullable=False),
        *keys,
        *(Column(figure, BigInteger, nullable=False) for figure in figures),
        Index(
            f"ux_{name}", "day", "stripe", *(key.name for key in keys), unique=True, postgresql_nulls_not_distinct=True
        ),
    )


def _customer_kind() -> Column[str]:
    return Column("customer_kind", Text, nullable=False)


def _theme() -> Column[str]:
    return Column("theme", Text, nullable=False)


def _channel_and_product() -> list[Column[str]]:
    return [Column("channel", Text, nullable=False), Column("product", Text)]


# Every metric but word of mouth's distinct customers, filtered by customer kind, channel and product.
day_count = _rollup("feedback_day_count", [_customer_kind(), *_channel_and_product()], DAY_FIGURES)
# Theme figures filtered by channel or product.
theme_day_count = _rollup(
    "feedback_theme_day_count", [_theme(), _customer_kind(), *_channel_and_product()], THEME_FIGURES
)
# Theme trends and unfiltered theme figures: a few thousand rows a year.
theme_day_total = _rollup("feedback_theme_day_total", [_theme(), _customer_kind()], THEME_FIGURES)


# Spikes (spikes.py) count each theme's complaints in the trailing window and in the 7 days before it: a range of
# this index, read without the table (the themes are in it), so a check costs the complaints of those days only.
Index(
    "ix_feedback_complaint_occurred_at",
    FeedbackRow.occurred_at,
    postgresql_where=FeedbackRow.kind == "complaint",
    postgresql_include=["themes"],
)


class ThemeSpikeRow(Base):
    """A theme's spike state: when it was last announced, and when a check last found it spiking."""

    __tablename__ = "feedback_theme_spike"

    theme: Mapped[str] = mapped_column(Text, primary_key=True)
    # The `window_end` of the last `feedback.theme_spiking` announced for the theme.
    announced_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The latest check that found it spiking: a spike is new once a whole window has passed since.
    spiking_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
