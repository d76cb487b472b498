"""Tables of the customers service: the customer, its timeline, and the latest state of what it is counted from.

A read model of the other services' events: nothing here is read from their databases.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Identity, Index, Integer, Numeric, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

CUSTOMER_KINDS = ("external", "internal")
ITEM_TYPES = ("feedback", "commitment", "expectation")
# A customer's next survey moment follows from these (services/customers/survey.py): never surveyed (no response,
# no survey due yet), the moment is `first_seen_at` plus the interval; else the later of the two plus the longer of
# the interval and the minimum gap. A partial index for each case finds the earliest.
SURVEY_FRESH = "last_survey_at IS NULL AND last_survey_due_at IS NULL"
SURVEY_AGAIN = "last_survey_at IS NOT NULL OR last_survey_due_at IS NOT NULL"
HEALTH_BANDS = ("green", "amber", "red")
# An item that counts against its customer's health (services/customers/health.py): what the partial index
# ix_customer_item_counted holds, so that judging a customer reads these and not every item it ever had.
COUNTED_ITEM = "open_complaint OR broken_promise OR unconfirmed_expectation OR capability_gap"


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Customer(Base):
    """A customer: its profile (null until a `PUT`) and what the events told about it."""

    __tablename__ = "customer"

    id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), primary_key=True, server_default=text("gen_random_uuid()")
    )
    customer_id: Mapped[str] = mapped_column(Text, unique=True)
    name: Mapped[str | None] = mapped_column(Text)
    customer_kind: Mapped[str] = mapped_column(Text)
    key_customer: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    segment: Mapped[str | None] = mapped_column(Text)
    lifetime_value_amount: Mapped[Decimal | None] = mapped_column(Numeric)
    lifetime_value_currency: Mapped[str | None] = mapped_column(Text)
    supplying_department: Mapped[str | None] = mapped_column(Text)
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    awareness: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    profiled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    first_seen_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_contact_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_survey_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The survey moment last fired (`customer.survey_due`), and whether no survey response came since.
    last_survey_due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    survey_due: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # The latest rating on each scale (by when it was given) and the health judged from all the factors.
    nps_score: Mapped[int | None] = mapped_column(Integer)
    nps_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    csat_score: Mapped[int | None] = mapped_column(Integer)
    csat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ces_score: Mapped[int | None] = mapped_column(Integer)
    ces_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    health_score: Mapped[int] = mapped_column(Integer, server_default=text("100"))
    health_band: Mapped[str] = mapped_column(Text, server_default=text("'green'"))
    health_reasons: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    health_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=text("now()"))

    __table_args__ = (
        CheckConstraint(one_of("customer_kind", CUSTOMER_KINDS), name="customer_kind"),
        Index("ix_customer_created_at_id", "created_at", "id"),
        Index("ix_customer_key_customer_created_at_id", "key_customer", "created_at", "id"),
        Index("ix_customer_customer_kind_created_at_id", "customer_kind", "created_at", "id"),
        # The survey scheduler's earliest moment, never surveyed and surveyed (services/customers/survey.py).
        Index("ix_customer_survey_first", "first_seen_at", postgresql_where=text(SURVEY_FRESH)),
        Index(
            "ix_customer_survey_again",
            text("greatest(last_survey_at, last_survey_due_at)"),
            postgresql_where=text(SURVEY_AGAIN),
        ),
        Index("ix_customer_survey_due_created_at_id", "survey_due", "created_at", "id"),
        CheckConstraint(one_of("health_band", HEALTH_BANDS), name="health_band"),
        Index("ix_customer_health_band_created_at_id", "health_band", "created_at", "id"),
        Index("ix_customer_silent_since", text("coalesce(last_contact_at, first_seen_at)")),
    )


class TimelineEntry(Base):
    """One event about a customer, as its timeline shows it."""

    __tablename__ = "timeline_entry"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    event_id: Mapped[str] = mapped_column(Text)
    type: Mapped[str] = mapped_column(Text)
    time: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    subject: Mapped[str] = mapped_column(Text)
    summary: Mapped[str] = mapped_column(Text)
    links: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)

    __table_args__ = (
        # Newest first, one customer at a time (a backward scan), with or without `?type=`.
        Index("ix_timeline_entry_customer_id_time_id", "customer_id", "time", "id"),
        Index("ix_timeline_entry_customer_id_type_time_id", "customer_id", "type", "time", "id"),
    )


class CustomerItem(Base):
    """The latest state of one feedback, commitment or expectation of a customer, as its last event said."""

    __tablename__ = "customer_item"

    item_type: Mapped[str] = mapped_column(Text, primary_key=True)
    item_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    open_complaint: Mapped[bool] = mapped_column(Boolean)
    open_promise: Mapped[bool] = mapped_column(Boolean)
    broken_promise: Mapped[bool] = mapped_column(Boolean)
    unconfirmed_expectation: Mapped[bool] = mapped_column(Boolean)
    capability_gap: Mapped[bool] = mapped_column(Boolean)
    # When a promise was first seen broken (for "broken in the last 90 days").
    broken_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the meeting brief shows of it: an expectation's own words, a promise's title, a complaint's themes.
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSONB)

    __table_args__ = (
        CheckConstraint(one_of("item_type", ITEM_TYPES), name="item_type"),
        Index("ix_customer_item_customer_id", "customer_id"),
        Index(
            "ix_customer_item_counted",
            "customer_id",
            postgresql_include=[
                "open_complaint",
                "broken_promise",
                "broken_at",
                "unconfirmed_expectation",
                "capability_gap",
            ],
            postgresql_where=text(COUNTED_ITEM),
        ),
    )


class BankQuestion(Base):
    """A question of the expectations service's bank, as `question.created` told it (for the brief's suggestions)."""

    __tablename__ = "bank_question"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    # The topic as a theme key (lower case, words joined by "_"): what a complaint theme is matched to.
    topic_key: Mapped[str] = mapped_column(Text)
    open_ended: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_bank_question_topic_key", "topic_key"),)
