"""Each customer's health: its latest NPS, CSAT and CES, and the score, band and reasons judged from them (issue 17).

Revision ID: customers_0003
Revises: customers_0002
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "customers_0003"
down_revision: str | None = "customers_0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCALES = ("nps", "csat", "ces")


def upgrade() -> None:
    for scale in SCALES:
        op.add_column("customer", sa.Column(f"{scale}_score", sa.Integer(), nullable=True))
        op.add_column("customer", sa.Column(f"{scale}_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("customer", sa.Column("health_score", sa.Integer(), nullable=False, server_default=sa.text("100")))
    op.add_column("customer", sa.Column("health_band", sa.Text(), nullable=False, server_default=sa.text("'green'")))
    op.add_column(
        "customer",
        sa.Column("health_reasons", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    op.add_column("customer", sa.Column("health_at", sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f("ck_customer_health_band"), "customer", "health_band IN ('green', 'amber', 'red')")
    op.create_index("ix_customer_health_band_created_at_id", "customer", ["health_band", "created_at", "id"])
    # `silent_for_days` and the silence sweep: silent since the last contact, or since first seen without one.
    op.create_index("ix_customer_silent_since", "customer", [sa.text("coalesce(last_contact_at, first_seen_at)")])


def downgrade() -> None:
    op.drop_index("ix_customer_silent_since", table_name="customer")
    op.drop_index("ix_customer_health_band_created_at_id", table_name="customer")
    op.drop_constraint("ck_customer_health_band", "customer", type_="check")
    for column in ("health_at", "health_reasons", "health_band", "health_score"):
        op.drop_column("customer", column)
    for scale in reversed(SCALES):
        op.drop_column("customer", f"{scale}_at")
        op.drop_column("customer", f"{scale}_score")
