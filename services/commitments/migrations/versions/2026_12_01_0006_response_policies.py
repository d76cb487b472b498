"""Every complaint is a promise (contract §5, v1.1): the response policies, with the three defaults.

Revision ID: commitments_0006
Revises: commitments_0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "commitments_0006"
down_revision: str | None = "commitments_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

HOUR = 3600
DEFAULT_POLICIES: list[dict[str, Any]] = [
    {
        "name": "complaint",
        "match": {"kind": "complaint"},
        "department": "support",
        "acknowledge_within_seconds": 4 * HOUR,
        "resolve_within_seconds": 72 * HOUR,
    },
    {
        "name": "question",
        "match": {"kind": "question"},
        "department": "support",
        "acknowledge_within_seconds": 24 * HOUR,
    },
    {"name": "detractor", "match": {"detractor": True}, "department": "support", "follow_up_within_seconds": 48 * HOUR},
]


def upgrade() -> None:
    policy = op.create_table(
        "response_policy",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("match", postgresql.JSONB(), server_default=sa.text("'{}'::jsonb"), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=True),
        sa.Column("acknowledge_within_seconds", sa.Integer(), nullable=True),
        sa.Column("resolve_within_seconds", sa.Integer(), nullable=True),
        sa.Column("follow_up_within_seconds", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_response_policy")),
    )
    op.bulk_insert(
        policy,
        [
            {
                "owner_id": None,
                "acknowledge_within_seconds": None,
                "resolve_within_seconds": None,
                "follow_up_within_seconds": None,
                **default,
            }
            for default in DEFAULT_POLICIES
        ],
    )


def downgrade() -> None:
    op.drop_table("response_policy")
