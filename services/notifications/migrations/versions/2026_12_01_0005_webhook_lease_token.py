"""A webhook delivery's lease has a token: only the claim holding it renews it or writes the outcome.

Revision ID: notifications_0005
Revises: notifications_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "notifications_0005"
down_revision: str | None = "notifications_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Nullable and in no index: adding it rewrites nothing, and claims stay in-place (HOT) updates.
    op.add_column("webhook_delivery", sa.Column("lease_token", postgresql.UUID(as_uuid=True), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_delivery", "lease_token")
