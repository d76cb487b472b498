"""The default routing rule for `feedback.theme_spiking` (contract §6, v1.1): each theme spike → production, management.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name; only added if it is not there.

Revision ID: notifications_0010
Revises: notifications_0009
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from services.notifications.migrations.default_rules import add_default_rule, remove_default_rule

revision: str = "notifications_0010"
down_revision: str | None = "notifications_0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "Theme spikes"


def upgrade() -> None:
    add_default_rule(NAME, event_types=["feedback.theme_spiking"], departments=["production", "management"])


def downgrade() -> None:
    remove_default_rule(NAME)
