"""The default routing rule of contract §6 (v1.1) for `feedback.verdict_given`: rejected → support, management.

A default like the others (editable at /v1/routing-rules), with the id the
first defaults' scheme gives its name. A database whose rules were edited
keeps its edits: only this rule is added, and only if it is not there.

Revision ID: notifications_0006
Revises: notifications_0005
Create Date: 2026-12-01
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "notifications_0006"
down_revision: str | None = "notifications_0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The namespace of the default rules' ids (notifications_0002).
_RULE_IDS = uuid.UUID("5d0c4a55-4a4e-4bb0-9a55-6f1f4c1b0000")
NAME = "Rejected resolutions"
RULE_ID = uuid.uuid5(_RULE_IDS, NAME)


def upgrade() -> None:
    statement = sa.text(
        "INSERT INTO routing_rule (id, name, event_types, condition, departments) "
        "VALUES (:id, :name, :event_types, :condition, :departments) ON CONFLICT (id) DO NOTHING"
    ).bindparams(
        sa.bindparam("event_types", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("condition", type_=postgresql.JSONB()),
        sa.bindparam("departments", type_=postgresql.ARRAY(sa.Text())),
    )
    op.get_bind().execute(
        statement,
        {
            "id": RULE_ID,
            "name": NAME,
            "event_types": ["feedback.verdict_given"],
            "condition": {"field": "verdict.accepted", "op": "eq", "value": False},
            "departments": ["support", "management"],
        },
    )


def downgrade() -> None:
    op.get_bind().execute(sa.text("DELETE FROM routing_rule WHERE id = :id"), {"id": RULE_ID})
