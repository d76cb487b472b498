"""Each customer's health: score, band and reasons (issue 17). Filled in by the health work.

Revision ID: customers_0003
Revises: customers_0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

revision: str = "customers_0003"
down_revision: str | None = "customers_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
