"""The question bank the meeting brief suggests from (issue 17), and what the brief shows of each item.

Revision ID: customers_0005
Revises: customers_0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "customers_0005"
down_revision: str | None = "customers_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer_item", sa.Column("detail", postgresql.JSONB(), nullable=True))
    op.create_table(
        "bank_question",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("topic_key", sa.Text(), nullable=False),
        sa.Column("open_ended", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_bank_question"),
    )
    op.create_index("ix_bank_question_topic_key", "bank_question", ["topic_key"])


def downgrade() -> None:
    op.drop_table("bank_question")
    op.drop_column("customer_item", "detail")
