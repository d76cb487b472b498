"""The commitment table, with the scheduler's next moment and an index for every list filter.

Revision ID: commitments_0002
Revises: commitments_0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "commitments_0002"
down_revision: str | None = "commitments_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "('open', 'due_soon', 'overdue', 'met_on_time', 'met_late', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "commitment",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_soon_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_type", sa.Text(), nullable=False),
        sa.Column("source_id", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("renegotiations", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("history", postgresql.JSONB(), server_default=sa.text("'[]'::jsonb"), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("completion_note", sa.Text(), nullable=True),
        sa.Column("cancelled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cancellation_reason", sa.Text(), nullable=True),
        sa.Column("next_event", sa.Text(), nullable=True),
        sa.Column("next_event_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(f"status IN {STATUSES}", name=op.f("ck_commitment_status")),
        sa.CheckConstraint(
            "(next_event IS NULL) = (next_event_at IS NULL) "
            "AND (next_event IS NULL OR next_event IN ('due_soon', 'overdue'))",
            name=op.f("ck_commitment_next_event"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_commitment")),
    )
    op.create_index("ix_commitment_created_at_id", "commitment", ["created_at", "id"])
    op.create_index("ix_commitment_customer_id_created_at_id", "commitment", ["customer_id", "created_at", "id"])
    op.create_index("ix_commitment_department_created_at_id", "commitment", ["department", "created_at", "id"])
    op.create_index("ix_commitment_owner_id_created_at_id", "commitment", ["owner_id", "created_at", "id"])
    op.create_index("ix_commitment_status_created_at_id", "commitment", ["status", "created_at", "id"])
    op.create_index(
        "ix_commitment_source_type_source_id_created_at_id",
        "commitment",
        ["source_type", "source_id", "created_at", "id"],
    )
    op.create_index("ix_commitment_due_at", "commitment", ["due_at"])
    op.create_index(
        "ix_commitment_next_event_at",
        "commitment",
        ["next_event_at"],
        postgresql_where=sa.text("next_event_at IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_table("commitment")
