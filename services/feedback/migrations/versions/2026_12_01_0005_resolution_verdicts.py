"""The customer judges the resolution (contract §3, v1.1): one row per move to `resolved`, with its verdict.

Feedback resolved before this revision has no row: a verdict given by staff
makes one then; those resolutions never had a link.

Revision ID: feedback_0005
Revises: feedback_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "feedback_0005"
down_revision: str | None = "feedback_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback_resolution",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("feedback_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted", sa.Boolean(), nullable=True),
        sa.Column("fairness", sa.SmallInteger(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("given_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("given_by", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "(accepted IS NULL) = (given_at IS NULL) AND (accepted IS NULL) = (given_by IS NULL)",
            name=op.f("ck_feedback_resolution_verdict_complete"),
        ),
        sa.CheckConstraint(
            "given_by IS NULL OR given_by IN ('customer', 'staff')", name=op.f("ck_feedback_resolution_given_by")
        ),
        sa.CheckConstraint(
            "fairness IS NULL OR fairness BETWEEN 1 AND 5", name=op.f("ck_feedback_resolution_fairness")
        ),
        sa.ForeignKeyConstraint(
            ["feedback_id"],
            ["feedback.id"],
            name=op.f("fk_feedback_resolution_feedback_id_feedback"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feedback_resolution")),
    )
    op.create_index(
        "ix_feedback_resolution_feedback_id_resolved_at", "feedback_resolution", ["feedback_id", "resolved_at"]
    )


def downgrade() -> None:
    op.drop_table("feedback_resolution")
