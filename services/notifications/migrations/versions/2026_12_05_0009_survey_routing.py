"""The default routing rule for `customer.survey_due` (contract §6, §8): every customer due for a survey → sales.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name; only added if it is not there.

Revision ID: notifications_0009
Revises: notifications_0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from services.notifications.migrations.default_rules import add_default_rule, remove_default_rule

revision: str = "notifications_0009"
down_revision: str | None = "notifications_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "Customers due for a survey"


def upgrade() -> None:
    add_default_rule(NAME, event_types=["customer.survey_due"], departments=["sales"])


def downgrade() -> None:
    remove_default_rule(NAME)
