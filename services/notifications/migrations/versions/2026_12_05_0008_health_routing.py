"""The default routing rule for `customer.health_changed` (contract §8): a customer turning red → sales, management.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name; only added if it is not there.

Revision ID: notifications_0008
Revises: notifications_0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from services.notifications.migrations.default_rules import add_default_rule, remove_default_rule

revision: str = "notifications_0008"
down_revision: str | None = "notifications_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "Customers turning red"


def upgrade() -> None:
    add_default_rule(
        NAME,
        event_types=["customer.health_changed"],
        departments=["sales", "management"],
        condition={"field": "health.band", "op": "eq", "value": "red"},
    )


def downgrade() -> None:
    remove_default_rule(NAME)
