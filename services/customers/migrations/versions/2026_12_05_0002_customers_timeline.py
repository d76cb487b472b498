"""Customers, their timeline entries, and the latest state of each counted item.

Revision ID: customers_0002
Revises: customers_0001
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "customers_0002"
down_revision: str | None = "customers_0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _at(name: str, *, nullable: bool = False, now: bool = False) -> sa.Column[object]:
    default = sa.text("now()") if now else None
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable, server_default=default)


def upgrade() -> None:
    op.create_table(
        "customer",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False, server_default=sa.text("gen_random_uuid()")),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        sa.Column("key_customer", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("segment", sa.Text(), nullable=True),
        sa.Column("lifetime_value_amount", sa.Numeric(), nullable=True),
        sa.Column("lifetime_value_currency", sa.Text(), nullable=True),
        sa.Column("supplying_department", sa.Text(), nullable=True),
        sa.Column("contacts", postgresql.JSONB(), nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("awareness", postgresql.JSONB(), nullable=True),
        _at("profiled_at", nullable=True),
        _at("first_seen_at"),
        _at("last_contact_at", nullable=True),
        _at("last_survey_at", nullable=True),
        _at("created_at", now=True),
        _at("updated_at", now=True),
        sa.PrimaryKeyConstraint("id", name="pk_customer"),
        sa.UniqueConstraint("customer_id", name="uq_customer_customer_id"),
        sa.CheckConstraint("customer_kind IN ('external', 'internal')", name="ck_customer_customer_kind"),
    )
    for columns in (["created_at", "id"], ["key_customer", "created_at", "id"], ["customer_kind", "created_at", "id"]):
        op.create_index(f"ix_customer_{'_'.join(columns)}", "customer", columns)

    op.create_table(
        "timeline_entry",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        _at("time"),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("links", postgresql.JSONB(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_timeline_entry"),
    )
    op.create_index("ix_timeline_entry_customer_id_time_id", "timeline_entry", ["customer_id", "time", "id"])
    op.create_index(
        "ix_timeline_entry_customer_id_type_time_id", "timeline_entry", ["customer_id", "type", "time", "id"]
    )

    op.create_table(
        "customer_item",
        sa.Column("item_type", sa.Text(), nullable=False),
        sa.Column("item_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("open_complaint", sa.Boolean(), nullable=False),
        sa.Column("open_promise", sa.Boolean(), nullable=False),
        sa.Column("broken_promise", sa.Boolean(), nullable=False),
        sa.Column("unconfirmed_expectation", sa.Boolean(), nullable=False),
        sa.Column("capability_gap", sa.Boolean(), nullable=False),
        _at("broken_at", nullable=True),
        _at("updated_at"),
        sa.PrimaryKeyConstraint("item_type", "item_id", name="pk_customer_item"),
        sa.CheckConstraint("item_type IN ('feedback', 'commitment', 'expectation')", name="ck_customer_item_item_type"),
    )
    op.create_index("ix_customer_item_customer_id", "customer_item", ["customer_id"])


def downgrade() -> None:
    op.drop_table("customer_item")
    op.drop_table("timeline_entry")
    op.drop_table("customer")
