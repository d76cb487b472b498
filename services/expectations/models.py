"""Tables of the expectations service: questions, meetings, expectations and their versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, DateTime, ForeignKey, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

CUSTOMER_KINDS = ("external", "internal")
PRIORITIES = ("high", "medium", "low")
CAPABILITIES = ("can_meet", "partial", "cannot_meet")
# The capabilities that make an expectation a capability gap (the demand backlog, `GET /v1/expectations/gaps`).
GAP_CAPABILITIES = ("partial", "cannot_meet")
EXPECTATION_STATUSES = ("recorded", "confirmed")
QUESTION_RULES = (
    "question_word",
    "open_request",
    "tag_question",
    "rating_scale",
    "either_or",
    "leading_auxiliary",
    "statement",
)


def one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class Question(Base):
    """A question prepared ahead of customer meetings, classified when saved."""

    __tablename__ = "question"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    topic: Mapped[str] = mapped_column(Text)
    open_ended: Mapped[bool] = mapped_column(Boolean)
    rule: Mapped[str] = mapped_column(Text)
    guidance: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("rule", QUESTION_RULES), name="rule"),
        Index("ix_question_created_at_id", "created_at", "id"),
        Index("ix_question_topic_created_at_id", "topic", "created_at", "id"),
    )


class Meeting(Base):
    """A customer meeting held by at least two staff members."""

    __tablename__ = "meeting"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    customer_kind: Mapped[str] = mapped_column(Text)
    held_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Who attended is part of the meeting record, read and written whole.
    attendees: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    customer_participants: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    notes: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("customer_kind", CUSTOMER_KINDS), name="customer_kind"),
        Index("ix_meeting_created_at_id", "created_at", "id"),
        Index("ix_meeting_customer_id_created_at_id", "customer_id", "created_at", "id"),
        Index("ix_meeting_customer_kind_created_at_id", "customer_kind", "created_at", "id"),
    )


class MeetingQuestion(Base):
    """A prepared question asked in a meeting, in the order prepared."""

    __tablename__ = "meeting_question"

    meeting_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("meeting.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    question_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("question.id"))

    __table_args__ = (Index("ix_meeting_question_question_id", "question_id"),)


class ExpectationContent:
    """What one version of an expectation says; the current row and each kept version share it."""

    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(Text)
    statement: Mapped[str] = mapped_column(Text)
    restatement: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    key_point: Mapped[bool] = mapped_column(Boolean)
    measure: Mapped[str | None] = mapped_column(Text)
    capability: Mapped[str] = mapped_column(Text)
    # The platform taxonomy's themes (`shared/themes.py`) the statement and restatement mention, in taxonomy order.
    themes: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    question_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), ForeignKey("question.id"))
    confirmed_by: Mapped[str | None] = mapped_column(Text)
    confirmation_note: Mapped[str | None] = mapped_column(Text)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def confirmation(self) -> dict[str, object] | None:
        """Who confirmed this version, as the API nests it (`schemas.Confirmation`); None until confirmed."""
        if self.confirmed_by is None or self.confirmed_at is None:
            return None
        return {"confirmed_by": self.confirmed_by, "note": self.confirmation_note, "confirmed_at": self.confirmed_at}


# The columns a revision copies from the current row into `expectation_version`.
VERSION_FIELDS = tuple(name for name in ExpectationContent.__annotations__)


class Expectation(ExpectationContent, Base):
    """The current version of an expectation; earlier versions live in `expectation_version`."""

    __tablename__ = "expectation"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    meeting_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("meeting.id"))
    customer_id: Mapped[str] = mapped_column(Text)
    customer_kind: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("customer_kind", CUSTOMER_KINDS), name="customer_kind"),
        CheckConstraint(one_of("status", EXPECTATION_STATUSES), name="status"),
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(one_of("capability", CAPABILITIES), name="capability"),
        Index("ix_expectation_created_at_id", "created_at", "id"),
        Index("ix_expectation_customer_id_created_at_id", "customer_id", "created_at", "id"),
        Index("ix_expectation_status_created_at_id", "status", "created_at", "id"),
        Index("ix_expectation_capability_created_at_id", "capability", "created_at", "id"),
        Index("ix_expectation_meeting_id_created_at_id", "meeting_id", "created_at", "id"),
        Index("ix_expectation_question_id", "question_id"),
        Index("ix_expectation_customer_kind_created_at_id", "customer_kind", "created_at", "id"),
        # The demand backlog reads only the gaps, by when their current version was recorded (and customer kind).
        Index(
            "ix_expectation_gap_recorded_at",
            "recorded_at",
            postgresql_where=text(one_of("capability", GAP_CAPABILITIES)),
        ),
        Index(
            "ix_expectation_gap_customer_kind_recorded_at",
            "customer_kind",
            "recorded_at",
            postgresql_where=text(one_of("capability", GAP_CAPABILITIES)),
        ),
    )


class ExpectationVersion(ExpectationContent, Base):
    """An earlier version of an expectation, kept as it was when a revision replaced it."""

    __tablename__ = "expectation_version"

    expectation_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("expectation.id", ondelete="CASCADE"), primary_key=True
    )
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    superseded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        CheckConstraint(one_of("status", EXPECTATION_STATUSES), name="status"),
        CheckConstraint(one_of("priority", PRIORITIES), name="priority"),
        CheckConstraint(one_of("capability", CAPABILITIES), name="capability"),
    )
