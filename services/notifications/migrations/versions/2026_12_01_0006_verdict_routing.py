"""The default routing rule of contract §6 (v1.1) for `feedback.verdict_given`: rejected → support, management.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name. A database whose rules were edited
keeps its edits: only this rule is added, and only if it is not there.

Revision ID: notifications_0006
Revises: notifications_0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from services.notifications.migrations.default_rules import add_default_rule, remove_default_rule

revision: str = "notifications_0006"
down_revision: str | None = "notifications_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "Rejected resolutions"


def upgrade() -> None:
    add_default_rule(
        NAME,
        event_types=["feedback.verdict_given"],
        departments=["support", "management"],
        condition={"field": "verdict.accepted", "op": "eq", "value": False},
    )


def downgrade() -> None:
    remove_default_rule(NAME)
