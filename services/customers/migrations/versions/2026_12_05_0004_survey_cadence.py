"""Survey cadence: the survey moment last fired and whether it is still unanswered (issue 17).

A customer's next survey moment is not stored: it follows from the stored facts
(first seen, last survey response, last survey due) and the interval settings,
so one partial index per case (never surveyed: `first_seen_at`; else the later
of the last response and the last survey due) finds the earliest one.

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
        "ix_customer_survey_first",
        "customer",
        ["first_seen_at"],
        postgresql_where=sa.text("last_survey_at IS NULL AND last_survey_due_at IS NULL"),
    )
    op.create_index(
        "ix_customer_survey_again",
        "customer",
        [sa.text("greatest(last_survey_at, last_survey_due_at)")],
        postgresql_where=sa.text("last_survey_at IS NOT NULL OR last_survey_due_at IS NOT NULL"),
    )
    op.create_index("ix_customer_survey_due_created_at_id", "customer", ["survey_due", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_customer_survey_due_created_at_id", table_name="customer")
    op.drop_index("ix_customer_survey_again", table_name="customer")
    op.drop_index("ix_customer_survey_first", table_name="customer")
    op.drop_column("customer", "survey_due")
    op.drop_column("customer", "last_survey_due_at")
