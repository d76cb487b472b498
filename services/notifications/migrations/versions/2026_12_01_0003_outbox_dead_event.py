"""Events the broker refuses for good are set aside, so the relay goes on.

Revision ID: notifications_0003
Revises: notifications_0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from shared.migrations import create_dead_event_table, drop_dead_event_table

revision: str = "notifications_0003"
down_revision: str | None = "notifications_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_dead_event_table()


def downgrade() -> None:
    drop_dead_event_table()
