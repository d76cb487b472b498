"""The question bank the meeting brief suggests from (issue 17). Filled in by the brief work.

Revision ID: customers_0005
Revises: customers_0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

revision: str = "customers_0005"
down_revision: str | None = "customers_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
