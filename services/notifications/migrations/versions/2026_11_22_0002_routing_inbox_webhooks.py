"""Routing rules (with the contract's defaults), notifications, webhook subscriptions and deliveries.

Revision ID: notifications_0002
Revises: notifications_0001
Create Date: 2026-11-22
"""

import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "notifications_0002"
down_revision: str | None = "notifications_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The writing transaction's id: the live stream orders rows by it (see services/notifications/stream.py).
CURRENT_TXID = "(pg_current_xact_id()::text::bigint)"
_RULE_IDS = uuid.UUID("5d0c4a55-4a4e-4bb0-9a55-6f1f4c1b0000")


def _field(name: str, value: Any, op: str = "eq") -> dict[str, Any]:
    return {"field": name, "op": op, "value": value}


def _rating(scale: str, op: str, value: int) -> dict[str, Any]:
    return {"all": [_field("rating.scale", scale), _field("rating.value", value, op)]}


# Contract §6, one row per line of its table (the last line is two rules: overdue, and met late).
DEFAULT_RULES: list[dict[str, Any]] = [
    {
        "name": "Complaints and detractors",
        "event_types": ["feedback.received"],
        "condition": {
            "any": [
                _field("kind", "complaint"),
                _rating("nps", "lte", 6),
                _rating("csat", "lte", 2),
                _rating("ces", "gte", 5),
            ]
        },
        "departments": ["support", "management"],
    },
    {
        "name": "Compliments and promoters",
        "event_types": ["feedback.received"],
        "condition": {"any": [_field("kind", "compliment"), _rating("nps", "gte", 9)]},
        "departments": ["sales"],
    },
    {
        "name": "Suggestions",
        "event_types": ["feedback.received"],
        "condition": _field("kind", "suggestion"),
        "departments": ["production"],
    },
    {
        "name": "Questions",
        "event_types": ["feedback.received"],
        "condition": _field("kind", "question"),
        "departments": ["support"],
    },
    {
        "name": "Reopened feedback",
        "event_types": ["feedback.status_changed"],
        "condition": _field("status", "reopened"),
        "departments": ["support", "management"],
    },
    {"name": "Customer meetings", "event_types": ["meeting.recorded"], "departments": ["sales"]},
    {
        "name": "Confirmed expectations",
        "event_types": ["expectation.confirmed"],
        "departments": ["sales", "production"],
    },
    {
        "name": "Expectation gaps",
        "event_types": ["expectation.gap_identified"],
        "departments": ["production", "management"],
    },
    {
        "name": "Commitments, to their department",
        "event_types": [
            "commitment.created",
            "commitment.due_soon",
            "commitment.rescheduled",
            "commitment.met",
            "commitment.cancelled",
        ],
        "department_from": "department",
    },
    {
        "name": "Overdue commitments, to their department and management",
        "event_types": ["commitment.overdue"],
        "departments": ["management"],
        "department_from": "department",
    },
    {
        "name": "Commitments met late, to their department and management",
        "event_types": ["commitment.met"],
        "condition": _field("status", "met_late"),
        "departments": ["management"],
        "department_from": "department",
    },
]


def _timestamps() -> list[sa.Column[Any]]:
    return [
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False),
    ]


def upgrade() -> None:
    routing_rule = op.create_table(
        "routing_rule",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("condition", postgresql.JSONB(), nullable=True),
        sa.Column("departments", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("department_from", sa.Text(), nullable=True),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_routing_rule"),
    )
    op.create_index("ix_routing_rule_created_at_id", "routing_rule", ["created_at", "id"])

    op.create_table(
        "notification",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.clock_timestamp(), nullable=False),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("txid", sa.BigInteger(), server_default=sa.text(CURRENT_TXID), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notification"),
        sa.UniqueConstraint("event_id", "department", name="uq_notification_event_id_department"),
    )
    op.create_index("ix_notification_department_created_at_id", "notification", ["department", "created_at", "id"])
    op.create_index(
        "ix_notification_unread",
        "notification",
        ["department", "created_at", "id"],
        postgresql_where=sa.text("read_at IS NULL"),
    )
    op.create_index("ix_notification_txid_seq", "notification", ["txid", "seq"])

    op.create_table(
        "subscription",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'active'"), nullable=False),
        sa.Column("disabled_reason", sa.Text(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.Text(), nullable=False),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name="pk_subscription"),
    )
    op.create_index("ix_subscription_department_created_at_id", "subscription", ["department", "created_at", "id"])
    op.create_index("ix_subscription_status_created_at_id", "subscription", ["status", "created_at", "id"])
    op.create_index("ix_subscription_created_at_id", "subscription", ["created_at", "id"])

    op.create_table(
        "webhook_delivery",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("subscription_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("notification_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("event_type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempt_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("schedule_step", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status_code", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        *_timestamps(),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_delivery"),
        sa.ForeignKeyConstraint(
            ["subscription_id"],
            ["subscription.id"],
            name="fk_webhook_delivery_subscription_id_subscription",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["notification_id"], ["notification.id"], name="fk_webhook_delivery_notification_id_notification"
        ),
    )
    # Room on each page for the claim's in-place (HOT) update of leased_until.
    op.execute("ALTER TABLE webhook_delivery SET (fillfactor = 80)")
    op.create_index(
        "ix_webhook_delivery_due_per_subscription",
        "webhook_delivery",
        ["subscription_id", "next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_delivery_subscription_id_created_at_id",
        "webhook_delivery",
        ["subscription_id", "created_at", "id"],
    )
    op.create_index(
        "ix_webhook_delivery_failed",
        "webhook_delivery",
        ["subscription_id", "created_at", "id"],
        postgresql_where=sa.text("status = 'failed'"),
    )

    op.create_table(
        "delivery_attempt",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("delivery_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("attempted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_delivery_attempt"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_delivery.id"],
            name="fk_delivery_attempt_delivery_id_webhook_delivery",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_delivery_attempt_delivery_id_attempted_at", "delivery_attempt", ["delivery_id", "attempted_at"])

    # Wake the live-stream feed and the webhook workers on every insert (one notice per statement).
    for table in ("notification", "webhook_delivery"):
        op.execute(
            f"""
            CREATE FUNCTION {table}_notify() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN PERFORM pg_notify('{table}', ''); RETURN NULL; END $$
            """
        )
        op.execute(
            f"CREATE TRIGGER {table}_notify AFTER INSERT ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_notify()"
        )

    op.bulk_insert(
        routing_rule,
        [
            {
                "id": uuid.uuid5(_RULE_IDS, rule["name"]),
                "name": rule["name"],
                "event_types": rule["event_types"],
                "condition": rule.get("condition"),
                "departments": rule.get("departments", []),
                "department_from": rule.get("department_from"),
            }
            for rule in DEFAULT_RULES
        ],
    )


def downgrade() -> None:
    for table in ("webhook_delivery", "notification"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_notify ON {table}")
        op.execute(f"DROP FUNCTION IF EXISTS {table}_notify()")
    for table in ("delivery_attempt", "webhook_delivery", "subscription", "notification", "routing_rule"):
        op.drop_table(table)
