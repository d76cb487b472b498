"""The list's `due_before` filter walks `(created_at, id)` from its moment, and the few promises made after their
due date (response promises due from older feedback) through a partial index of their own (issue 18 item 4).

Revision ID: commitments_0010
Revises: commitments_0009
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "commitments_0010"
down_revision: str | None = "commitments_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_commitment_made_after_due"


def upgrade() -> None:
    op.create_index(INDEX, "commitment", ["created_at", "id"], postgresql_where=sa.text("due_at < created_at"))


def downgrade() -> None:
    op.drop_index(INDEX, table_name="commitment")
