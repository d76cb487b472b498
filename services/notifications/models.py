"""Tables of the notifications service: routing rules, notifications, webhook subscriptions and deliveries."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from shared.db import Base

# Rows are ordered by the transaction that wrote them, so the live stream can tell
# which rows have settled (every older transaction has finished) and never skips one.
CURRENT_TXID = text("(pg_current_xact_id()::text::bigint)")


class RoutingRule(Base):
    __tablename__ = "routing_rule"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    condition: Mapped[dict[str, Any] | None] = mapped_column(JSONB, nullable=True)
    departments: Mapped[list[str]] = mapped_column(ARRAY(Text))
    department_from: Mapped[str | None] = mapped_column(Text, nullable=True)
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())

    __table_args__ = (Index("ix_routing_rule_created_at_id", "created_at", "id"),)


class Notification(Base):
    """One event for one department: its inbox entry and the source of its stream and webhooks."""

    __tablename__ = "notification"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    department: Mapped[str] = mapped_column(Text)
    event_type: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text, nullable=True)
    customer_id: Mapped[str] = mapped_column(Text)
    # The event data's `customer_kind` (`internal` or `external`); null for an event that names none.
    customer_kind: Mapped[str | None] = mapped_column(Text, nullable=True)
    occurred_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # The CloudEvent as republished to notifications.<department> (with the `department` extension).
    value: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    read_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    txid: Mapped[int] = mapped_column(BigInteger, server_default=CURRENT_TXID)
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))

    __table_args__ = (
        UniqueConstraint("event_id", "department"),
        Index("ix_notification_department_created_at_id", "department", "created_at", "id"),
        Index(
            "ix_notification_unread",
            "department",
            "created_at",
            "id",
            postgresql_where=text("read_at IS NULL"),
        ),
        # The read ones (`unread=false`), newest first (notifications_0012).
        Index(
            "ix_notification_read",
            "department",
            "created_at",
            "id",
            postgresql_where=text("read_at IS NOT NULL"),
        ),
        Index("ix_notification_txid_seq", "txid", "seq"),
        # The inbox's customer_kind filter, along the inbox's keyset.
        Index(
            "ix_notification_department_customer_kind_created_at_id", "department", "customer_kind", "created_at", "id"
        ),
        # The purge's (shared/purge.py): read ones by when they were read.
        Index("ix_notification_read_at", "read_at", postgresql_where=text("read_at IS NOT NULL")),
    )


class Subscription(Base):
    """A department's webhook endpoint."""

    __tablename__ = "subscription"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    department: Mapped[str] = mapped_column(Text)
    url: Mapped[str] = mapped_column(Text)
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    # Encrypted (services/notifications/secrets_at_rest.py): `seal` to write, `reveal` to sign.
    secret: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'active'"))
    disabled_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    created_by: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())

    __table_args__ = (
        Index("ix_subscription_department_created_at_id", "department", "created_at", "id"),
        Index("ix_subscription_status_created_at_id", "status", "created_at", "id"),
        Index("ix_subscription_created_at_id", "created_at", "id"),
    )


class WebhookDelivery(Base):
    """One notification owed to one subscription, with its retry state."""

    __tablename__ = "webhook_delivery"

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    subscription_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("subscription.id", ondelete="CASCADE")
    )
    notification_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), ForeignKey("notification.id"))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default=text("'pending'"))
    attempt_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Index into the retry schedule for the next failure; a manual retry starts it again.
    schedule_step: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # A worker's claim while its attempt is in flight; once it passes (a crashed worker) the delivery is due
    # again. Kept out of every index so that claiming is a cheap in-place (HOT) update.
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # Which claim holds the lease: only its holder renews it or writes the attempt's outcome.
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True), nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.clock_timestamp())
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    # Few indexes: every delivery is written three times (queued, attempted, settled). One delivery per
    # (subscription, event) needs no index of its own: deliveries are only added with their notification,
    # which is unique per (event, department).
    __table_args__ = (
        Index(
            "ix_webhook_delivery_due_per_subscription",
            "subscription_id",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        Index("ix_webhook_delivery_subscription_id_created_at_id", "subscription_id", "created_at", "id"),
        Index(
            "ix_webhook_delivery_failed",
            "subscription_id",
            "created_at",
            "id",
            postgresql_where=text("status = 'failed'"),
        ),
        # Deleting a notification (the purge) checks its foreign key here.
        Index("ix_webhook_delivery_notification_id", "notification_id"),
    )


class DeliveryAttempt(Base):
    """One HTTP request made for a delivery: the delivery log."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    delivery_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("webhook_delivery.id", ondelete="CASCADE")
    )
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    duration_ms: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    __table_args__ = (Index("ix_delivery_attempt_delivery_id_attempted_at", "delivery_id", "attempted_at"),)
