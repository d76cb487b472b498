"""Feedback and its lifecycle moves.

Revision ID: feedback_0002
Revises: feedback_0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "feedback_0002"
down_revision: str | None = "feedback_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("rating_scale", sa.Text(), nullable=True),
        sa.Column("rating_value", sa.SmallInteger(), nullable=True),
        sa.Column("product", sa.Text(), nullable=True),
        sa.Column("tags", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'new'"), nullable=False),
        sa.Column("sentiment_score", sa.Float(), nullable=False),
        sa.Column("sentiment_label", sa.Text(), nullable=False),
        sa.Column("sentiment_source", sa.Text(), nullable=False),
        sa.Column("themes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("(rating_scale IS NULL) = (rating_value IS NULL)", name=op.f("ck_feedback_rating_complete")),
        sa.CheckConstraint("text IS NOT NULL OR rating_scale IS NOT NULL", name=op.f("ck_feedback_text_or_rating")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback")),
    )
    op.create_index("ix_feedback_created_at_id", "feedback", ["created_at", "id"])
    op.create_index("ix_feedback_customer_id_created_at_id", "feedback", ["customer_id", "created_at", "id"])
    op.create_index("ix_feedback_kind_created_at_id", "feedback", ["kind", "created_at", "id"])
    op.create_index("ix_feedback_channel_created_at_id", "feedback", ["channel", "created_at", "id"])
    op.create_index("ix_feedback_status_created_at_id", "feedback", ["status", "created_at", "id"])
    op.create_index("ix_feedback_product_created_at_id", "feedback", ["product", "created_at", "id"])
    op.create_index("ix_feedback_occurred_at", "feedback", ["occurred_at"])
    op.create_index("ix_feedback_tags", "feedback", ["tags"], postgresql_using="gin")

    op.create_table(
        "feedback_status_change",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("feedback_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("from_status", sa.Text(), nullable=False),
        sa.Column("to_status", sa.Text(), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("changed_by", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feedback_id"],
            ["feedback.id"],
            name=op.f("fk_feedback_status_change_feedback_id_feedback"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_status_change")),
    )
    op.create_index("ix_feedback_status_change_feedback_id_id", "feedback_status_change", ["feedback_id", "id"])


def downgrade() -> None:
    op.drop_table("feedback_status_change")
    op.drop_table("feedback")
