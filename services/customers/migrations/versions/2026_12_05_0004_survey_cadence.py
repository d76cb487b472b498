"""Survey cadence: the survey moment last fired and whether it is still unanswered (issue 17).

A customer's next survey moment is not stored: it follows from the stored facts
(first seen, last survey response, last survey due) and the interval settings,
so the expression index `ix_customer_survey_base` finds the earliest one.

Revision ID: customers_0004
Revises: customers_0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "customers_0004"
down_revision: str | None = "customers_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer", sa.Column("last_survey_due_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customer", sa.Column("survey_due", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.create_index(
        "ix_customer_survey_base",
        "customer",
        [
            sa.text("(last_survey_at IS NULL AND last_survey_due_at IS NULL)"),
            sa.text("coalesce(greatest(last_survey_at, last_survey_due_at), first_seen_at)"),
        ],
    )
    op.create_index("ix_customer_survey_due_created_at_id", "customer", ["survey_due", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_customer_survey_due_created_at_id", table_name="customer")
    op.drop_index("ix_customer_survey_base", table_name="customer")
    op.drop_column("customer", "survey_due")
    op.drop_column("customer", "last_survey_due_at")
