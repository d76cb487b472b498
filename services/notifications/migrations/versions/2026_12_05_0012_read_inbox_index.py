"""Fast at volume (issue 18 item 4): the inbox's read-only filter walks an index of its own.

`unread=false` lists a department's read notifications newest first. With only
`(department, created_at, id)` PostgreSQL walks the department's notifications
and skips the unread ones, which costs little while most are read but walks far
when few are (a department that reads rarely); a partial index of the read
ones keeps every page one index walk, as `ix_notification_unread` does for the
unread ones.

Revision ID: notifications_0012
Revises: notifications_0011
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0012"
down_revision: str | None = "notifications_0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_notification_read"


def upgrade() -> None:
    op.create_index(
        INDEX, "notification", ["department", "created_at", "id"], postgresql_where=sa.text("read_at IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notification")
