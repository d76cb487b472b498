"""Survey cadence: each customer's next survey moment (issue 17). Filled in by the survey work.

Revision ID: customers_0004
Revises: customers_0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

revision: str = "customers_0004"
down_revision: str | None = "customers_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
