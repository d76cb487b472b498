"""Questions, meetings and expectations with their earlier versions.

Revision ID: expectations_0002
Revises: expectations_0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "expectations_0002"
down_revision: str | None = "expectations_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('recorded', 'confirmed')"
PRIORITIES = "priority IN ('high', 'medium', 'low')"
CAPABILITIES = "capability IN ('can_meet', 'partial', 'cannot_meet')"
CUSTOMER_KINDS = "customer_kind IN ('external', 'internal')"
RULES = (
    "rule IN ('question_word', 'open_request', 'tag_question', 'rating_scale', "
    "'either_or', 'leading_auxiliary', 'statement')"
)


def _at(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _uuid(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, postgresql.UUID(as_uuid=True), nullable=nullable)


def _heard() -> list[sa.Column[object]]:
    """The columns of one version of an expectation, as heard in the meeting."""
    return [
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("restatement", sa.Text(), nullable=False),
        sa.Column("priority", sa.Text(), nullable=False),
        sa.Column("key_point", sa.Boolean(), nullable=False),
        sa.Column("measure", sa.Text(), nullable=True),
        sa.Column("capability", sa.Text(), nullable=False),
        _uuid("question_id", nullable=True),
        sa.Column("confirmed_by", sa.Text(), nullable=True),
        sa.Column("confirmation_note", sa.Text(), nullable=True),
        _at("confirmed_at", nullable=True),
        _at("recorded_at"),
    ]


def upgrade() -> None:
    op.create_table(
        "question",
        _uuid("id"),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("open_ended", sa.Boolean(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("guidance", sa.Text(), nullable=True),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_question"),
        sa.CheckConstraint(RULES, name="ck_question_rule"),
    )
    op.create_index("ix_question_created_at_id", "question", ["created_at", "id"])
    op.create_index("ix_question_topic_created_at_id", "question", ["topic", "created_at", "id"])

    op.create_table(
        "meeting",
        _uuid("id"),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        _at("held_at"),
        sa.Column("attendees", postgresql.JSONB(), nullable=False),
        sa.Column("customer_participants", postgresql.JSONB(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        _at("created_at"),
        sa.PrimaryKeyConstraint("id", name="pk_meeting"),
        sa.CheckConstraint(CUSTOMER_KINDS, name="ck_meeting_customer_kind"),
    )
    op.create_index("ix_meeting_created_at_id", "meeting", ["created_at", "id"])
    op.create_index("ix_meeting_customer_id_created_at_id", "meeting", ["customer_id", "created_at", "id"])

    op.create_table(
        "meeting_question",
        _uuid("meeting_id"),
        sa.Column("position", sa.Integer(), nullable=False),
        _uuid("question_id"),
        sa.PrimaryKeyConstraint("meeting_id", "position", name="pk_meeting_question"),
        sa.ForeignKeyConstraint(
            ["meeting_id"], ["meeting.id"], name="fk_meeting_question_meeting_id_meeting", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(["question_id"], ["question.id"], name="fk_meeting_question_question_id_question"),
    )
    op.create_index("ix_meeting_question_question_id", "meeting_question", ["question_id"])

    op.create_table(
        "expectation",
        _uuid("id"),
        _uuid("meeting_id"),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        *_heard(),
        _at("created_at"),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("id", name="pk_expectation"),
        sa.ForeignKeyConstraint(["meeting_id"], ["meeting.id"], name="fk_expectation_meeting_id_meeting"),
        sa.ForeignKeyConstraint(["question_id"], ["question.id"], name="fk_expectation_question_id_question"),
        sa.CheckConstraint(CUSTOMER_KINDS, name="ck_expectation_customer_kind"),
        sa.CheckConstraint(STATUSES, name="ck_expectation_status"),
        sa.CheckConstraint(PRIORITIES, name="ck_expectation_priority"),
        sa.CheckConstraint(CAPABILITIES, name="ck_expectation_capability"),
    )
    for columns in (
        ["created_at", "id"],
        ["customer_id", "created_at", "id"],
        ["status", "created_at", "id"],
        ["capability", "created_at", "id"],
        ["meeting_id", "created_at", "id"],
        ["question_id"],
    ):
        op.create_index(f"ix_expectation_{'_'.join(columns)}", "expectation", columns)

    op.create_table(
        "expectation_version",
        _uuid("expectation_id"),
        sa.Column("version", sa.Integer(), nullable=False),
        *_heard(),
        _at("superseded_at"),
        sa.PrimaryKeyConstraint("expectation_id", "version", name="pk_expectation_version"),
        sa.ForeignKeyConstraint(
            ["expectation_id"],
            ["expectation.id"],
            name="fk_expectation_version_expectation_id_expectation",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["question_id"], ["question.id"], name="fk_expectation_version_question_id_question"),
        sa.CheckConstraint(STATUSES, name="ck_expectation_version_status"),
        sa.CheckConstraint(PRIORITIES, name="ck_expectation_version_priority"),
        sa.CheckConstraint(CAPABILITIES, name="ck_expectation_version_capability"),
    )


def downgrade() -> None:
    op.drop_table("expectation_version")
    op.drop_table("expectation")
    op.drop_table("meeting_question")
    op.drop_table("meeting")
    op.drop_table("question")
