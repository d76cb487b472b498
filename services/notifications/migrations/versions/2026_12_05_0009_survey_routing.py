"""The default routing rule for `customer.survey_due` (contract §6, §8): every customer due for a survey → sales.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name; only added if it is not there.

Revision ID: notifications_0009
Revises: notifications_0008
Create Date: 2026-12-05
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "notifications_0009"
down_revision: str | None = "notifications_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The namespace of the default rules' ids (notifications_0002).
_RULE_IDS = uuid.UUID("5d0c4a55-4a4e-4bb0-9a55-6f1f4c1b0000")
NAME = "Customers due for a survey"
RULE_ID = uuid.uuid5(_RULE_IDS, NAME)


def upgrade() -> None:
    statement = sa.text(
        "INSERT INTO routing_rule (id, name, event_types, departments) "
        "VALUES (:id, :name, :event_types, :departments) ON CONFLICT (id) DO NOTHING"
    ).bindparams(
        sa.bindparam("event_types", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("departments", type_=postgresql.ARRAY(sa.Text())),
    )
    op.get_bind().execute(
        statement, {"id": RULE_ID, "name": NAME, "event_types": ["customer.survey_due"], "departments": ["sales"]}
    )


def downgrade() -> None:
    op.get_bind().execute(sa.text("DELETE FROM routing_rule WHERE id = :id"), {"id": RULE_ID})
