"""The list's time range read from one index: `(occurred_at, created_at, id)` in place of `(occurred_at)`.

A list narrowed by `since` and `until` (on `occurred_at`) is ordered by `(created_at, id)`. Walking
`ix_feedback_created_at_id` newest first reads, and throws away, every feedback newer than the range before
the page: most of the table for a range months back. With `created_at` and `id` in the range's own index, the
range's `(created_at, id)` are read from the index alone, the page's 50 picked from them, and only those 50
rows read from the table (repository.py, `list_feedback`).

It replaces `ix_feedback_occurred_at` (its leading column): the metrics' edge days and spikes read the same
ranges through it, and a capture still updates one index for `occurred_at`, not two.

Revision ID: feedback_0008
Revises: feedback_0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "feedback_0008"
down_revision: str | None = "feedback_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_feedback_occurred_at_created_at_id", "feedback", ["occurred_at", "created_at", "id"])
    op.drop_index("ix_feedback_occurred_at", table_name="feedback")


def downgrade() -> None:
    op.create_index("ix_feedback_occurred_at", "feedback", ["occurred_at"])
    op.drop_index("ix_feedback_occurred_at_created_at_id", table_name="feedback")
