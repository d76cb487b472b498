"""Theme spikes (contract §3, v1.1): each theme's spike state, and the index a check counts complaints through.

- `feedback_theme_spike`: one row per theme ever announced as spiking (`services/feedback/spikes.py`): when
  it was announced and when a check last found it spiking. It is changed in the transaction that writes the
  `feedback.theme_spiking` event, so a spike is announced once across replicas and restarts.
- `ix_feedback_complaint_occurred_at`: complaints by `occurred_at`, with their themes, so the trailing window
  and the 7 days before it are read from one index range (an index-only scan), not from the table.

Revision ID: feedback_0007
Revises: feedback_0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "feedback_0007"
down_revision: str | None = "feedback_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedback_theme_spike",
        sa.Column("theme", sa.Text(), nullable=False),
        sa.Column("announced_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("spiking_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("theme", name=op.f("pk_feedback_theme_spike")),
    )
    op.create_index(
        "ix_feedback_complaint_occurred_at",
        "feedback",
        ["occurred_at"],
        postgresql_where=sa.text("kind = 'complaint'"),
        postgresql_include=["themes"],
    )


def downgrade() -> None:
    op.drop_index("ix_feedback_complaint_occurred_at", table_name="feedback")
    op.drop_table("feedback_theme_spike")
