"""Platform tables as the other services have them now: outbox (and its dead events), idempotency keys
scoped to `sub` and `department`, processed events.

Revision ID: customers_0001
Revises:
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from shared.migrations import (
    create_dead_event_table,
    create_platform_tables,
    drop_dead_event_table,
    drop_platform_tables,
    scope_idempotency_keys,
)

revision: str = "customers_0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_platform_tables()
    create_dead_event_table()
    scope_idempotency_keys()


def downgrade() -> None:
    drop_dead_event_table()
    drop_platform_tables()
