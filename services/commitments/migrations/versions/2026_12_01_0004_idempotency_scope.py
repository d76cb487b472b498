"""Idempotency-Keys are scoped to the token's `sub` and `department` (contract §1, v1.1).

Revision ID: commitments_0004
Revises: commitments_0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from shared.migrations import scope_idempotency_keys, unscope_idempotency_keys

revision: str = "commitments_0004"
down_revision: str | None = "commitments_0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    scope_idempotency_keys()


def downgrade() -> None:
    unscope_idempotency_keys()
