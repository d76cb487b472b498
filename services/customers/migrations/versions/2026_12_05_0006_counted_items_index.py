"""The items that count against a customer's health, in a partial covering index (issue #20 item 3).

Judging a customer's health (every batch of the consumer) read every item it ever had; with this index it
reads only the open complaints, broken promises, unconfirmed expectations and capability gaps.

Revision ID: customers_0006
Revises: customers_0005
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "customers_0006"
down_revision: str | None = "customers_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_customer_item_counted",
        "customer_item",
        ["customer_id"],
        postgresql_include=[
            "open_complaint",
            "broken_promise",
            "broken_at",
            "unconfirmed_expectation",
            "capability_gap",
        ],
        postgresql_where=sa.text("open_complaint OR broken_promise OR unconfirmed_expectation OR capability_gap"),
    )


def downgrade() -> None:
    op.drop_index("ix_customer_item_counted", table_name="customer_item")
