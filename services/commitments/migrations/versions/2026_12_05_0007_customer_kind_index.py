"""The list's `customer_kind` filter walks `(customer_kind, created_at, id)` (contract §1, v1.1).

Revision ID: commitments_0007
Revises: commitments_0006
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "commitments_0007"
down_revision: str | None = "commitments_0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEX = "ix_commitment_customer_kind_created_at_id"


def upgrade() -> None:
    op.create_index(INDEX, "commitment", ["customer_kind", "created_at", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="commitment")
