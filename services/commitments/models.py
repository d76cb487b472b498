"""The commitment table: one row per promise, with its scheduler state."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, CheckConstraint, DateTime, Double, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

STATUSES = ("open", "due_soon", "overdue", "met_on_time", "met_late", "cancelled")
SCHEDULED_EVENTS = ("due_soon", "overdue")
KINDS = ("promise", "acknowledge", "resolve", "follow_up")
BROKEN_BECAUSE = (
    "overdue",
    "met_late",
    "rescheduled_without_agreement",
    "cancelled_without_agreement",
    "cancelled_after_due",
)


class Commitment(Base):
    __tablename__ = "commitment"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    customer_kind: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    owner_id: Mapped[str] = mapped_column(Text)
    department: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # due_at minus the lead time in force when this due date was set.
    due_soon_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_type: Mapped[str] = mapped_column(Text)
    source_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    renegotiations: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    history: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completion_note: Mapped[str | None] = mapped_column(Text)
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancellation_reason: Mapped[str | None] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text, server_default=text("'promise'"))
    # Null while undecided; false for good once broken_because is set.
    kept: Mapped[bool | None] = mapped_column(Boolean)
    broken_because: Mapped[str | None] = mapped_column(Text)
    excuses: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # The scheduler's next moment for this promise: which event, and when.
    next_event: Mapped[str | None] = mapped_column(Text)
    next_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    @property
    def source(self) -> dict[str, str | None]:
        """What the promise answers, as the API nests it (`schemas.CommitmentSource`)."""
        return {"type": self.source_type, "id": self.source_id}

    __table_args__ = (
        CheckConstraint(f"status IN {STATUSES!r}", name="status"),
        CheckConstraint(f"kind IN {KINDS!r}", name="kind"),
        CheckConstraint(
            f"(broken_because IS NULL OR broken_because IN {BROKEN_BECAUSE!r}) "
            "AND ((broken_because IS NOT NULL) = (kept IS FALSE))",
            name="broken_because",
        ),
        CheckConstraint(
            "(next_event IS NULL) = (next_event_at IS NULL) "
            f"AND (next_event IS NULL OR next_event IN {SCHEDULED_EVENTS!r})",
            name="next_event",
        ),
        Index("ix_commitment_created_at_id", "created_at", "id"),
        Index("ix_commitment_customer_id_created_at_id", "customer_id", "created_at", "id"),
        Index("ix_commitment_department_created_at_id", "department", "created_at", "id"),
        Index("ix_commitment_owner_id_created_at_id", "owner_id", "created_at", "id"),
        Index("ix_commitment_status_created_at_id", "status", "created_at", "id"),
        Index("ix_commitment_source_type_source_id_created_at_id", "source_type", "source_id", "created_at", "id"),
        Index("ix_commitment_kind_created_at_id", "kind", "created_at", "id"),
        Index("ix_commitment_customer_kind_created_at_id", "customer_kind", "created_at", "id"),
        Index("ix_commitment_due_at", "due_at"),
        # The few promises made after their due date: the list's due_before walks them apart (commitments_0010).
        Index("ix_commitment_made_after_due", "created_at", "id", postgresql_where=text("due_at < created_at")),
        # Only armed promises: the scheduler's next moment is one index probe away.
        Index("ix_commitment_next_event_at", "next_event_at", postgresql_where=text("next_event_at IS NOT NULL")),
    )


class RollupCounts:
    """The accountability counts of the promises due in one day or one month (UTC) of a rollup's key: kept by
    triggers in the transaction of every write to `commitment` (commitments_0008, commitments_0009)."""

    grain: Mapped[str] = mapped_column(Text, primary_key=True)
    # The first moment of the day or month (UTC) the promises are due in.
    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    # Not cancelled; of those, met on time, met late and not yet met (open, due soon or overdue).
    due: Mapped[int] = mapped_column(BigInteger)
    cancelled: Mapped[int] = mapped_column(BigInteger)
    met_on_time: Mapped[int] = mapped_column(BigInteger)
    met_late: Mapped[int] = mapped_column(BigInteger)
    unmet: Mapped[int] = mapped_column(BigInteger)
    # Seconds between due and completed, summed over the promises met late.
    lateness_seconds: Mapped[float] = mapped_column(Double)
    renegotiations: Mapped[int] = mapped_column(BigInteger)
    kept: Mapped[int] = mapped_column(BigInteger)
    broken: Mapped[int] = mapped_column(BigInteger)
    excuses: Mapped[int] = mapped_column(BigInteger)


class CommitmentRollup(RollupCounts, Base):
    """Per department, owner, kind and customer kind: the figures per kind when one owner is asked for."""

    __tablename__ = "commitment_rollup"

    department: Mapped[str] = mapped_column(Text, primary_key=True)
    owner_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_kind: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (
        CheckConstraint("grain IN ('day', 'month')", name="grain"),
        # One owner's rows without walking every owner's (commitments_0009).
        Index("ix_commitment_rollup_owner_id_grain_bucket", "owner_id", "grain", "bucket"),
    )


class CommitmentRollupDepartment(RollupCounts, Base):
    """Per department, kind and customer kind (no owner): a few dozen rows a month for the figures per department,
    per kind and in total (commitments_0009)."""

    __tablename__ = "commitment_rollup_department"

    department: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_kind: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (CheckConstraint("grain IN ('day', 'month')", name="grain"),)


class CommitmentRollupOwner(RollupCounts, Base):
    """Per owner, department and customer kind (no kind): the figures per owner (commitments_0009)."""

    __tablename__ = "commitment_rollup_owner"

    department: Mapped[str] = mapped_column(Text, primary_key=True)
    owner_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_kind: Mapped[str] = mapped_column(Text, primary_key=True)

    __table_args__ = (
        CheckConstraint("grain IN ('day', 'month')", name="grain"),
        Index("ix_commitment_rollup_owner_owner_id_grain_bucket", "owner_id", "grain", "bucket"),
    )


class ResponsePolicy(Base):
    """Which feedback becomes which response promises, for which department and how soon."""

    __tablename__ = "response_policy"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    # {kind?, channel?, customer_kind?, detractor?}: every given key must match.
    match: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    department: Mapped[str] = mapped_column(Text)
    owner_id: Mapped[str | None] = mapped_column(Text)
    acknowledge_within_seconds: Mapped[int | None] = mapped_column(Integer)
    resolve_within_seconds: Mapped[int | None] = mapped_column(Integer)
    follow_up_within_seconds: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
