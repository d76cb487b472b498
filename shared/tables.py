"""Tables every service database holds: outbox, idempotency keys, processed events."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID

from shared.db import Base

outbox_event = Table(
    "outbox_event",
    Base.metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    # The whole CloudEvent as the relay sends it (structured JSON mode).
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
)

# Events the broker refused for good (too large, an invalid topic), set aside so the relay goes on.
outbox_dead_event = Table(
    "outbox_dead_event",
    Base.metadata,
    Column("id", BigInteger, Identity(always=True), primary_key=True),
    Column("outbox_id", BigInteger, nullable=False),
    Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    Column("topic", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("event_type", Text, nullable=False),
    Column("value", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("failed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("reason", Text, nullable=False),
)

# Keys are scoped to the token's `sub` and `department` ('' for a token bound to none).
idempotency_key = Table(
    "idempotency_key",
    Base.metadata,
    Column("sub", Text, nullable=False),
    Column("key", Text, nullable=False),
    Column("department", Text, nullable=False, server_default=text("''")),
    Column("route", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    Column("status_code", Integer, nullable=False),
    Column("response_body", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("sub", "department", "key"),
    Index("ix_idempotency_key_created_at", "created_at"),
)

processed_event = Table(
    "processed_event",
    Base.metadata,
    Column("consumer", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("outcome", Text, nullable=False, server_default=text("'done'")),
    Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    PrimaryKeyConstraint("consumer", "event_id"),
)
