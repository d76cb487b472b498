"""What the purge job (shared/purge.py) needs to find and delete old rows without reading whole tables.

Read notifications by the moment they were read (a partial index: an unread one, as every new one is,
adds no entry), and webhook deliveries by their notification: deleting a notification checks its foreign
key there, one look-up per row instead of a scan of every delivery.

Revision ID: notifications_0007
Revises: notifications_0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0007"
down_revision: str | None = "notifications_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_notification_read_at", "notification", ["read_at"], postgresql_where=sa.text("read_at IS NOT NULL")
    )
    op.create_index("ix_webhook_delivery_notification_id", "webhook_delivery", ["notification_id"])


def downgrade() -> None:
    op.drop_index("ix_webhook_delivery_notification_id", table_name="webhook_delivery")
    op.drop_index("ix_notification_read_at", table_name="notification")
