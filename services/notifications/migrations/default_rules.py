"""A default routing rule added by a later migration, as the first defaults (notifications_0002) were.

Editable at /v1/routing-rules like the others; its id is the first defaults' scheme applied to its name,
so a database whose rules were edited keeps its edits: only this rule is added, and only if it is not there.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

# The namespace of the default rules' ids (notifications_0002).
RULE_IDS = uuid.UUID("5d0c4a55-4a4e-4bb0-9a55-6f1f4c1b0000")


def rule_id(name: str) -> uuid.UUID:
    return uuid.uuid5(RULE_IDS, name)


def add_default_rule(
    name: str, *, event_types: list[str], departments: list[str], condition: dict[str, Any] | None = None
) -> None:
    statement = sa.text(
        "INSERT INTO routing_rule (id, name, event_types, condition, departments) "
        "VALUES (:id, :name, :event_types, :condition, :departments) ON CONFLICT (id) DO NOTHING"
    ).bindparams(
        sa.bindparam("event_types", type_=postgresql.ARRAY(sa.Text())),
        sa.bindparam("condition", type_=postgresql.JSONB(none_as_null=True)),
        sa.bindparam("departments", type_=postgresql.ARRAY(sa.Text())),
    )
    op.get_bind().execute(
        statement,
        {
            "id": rule_id(name),
            "name": name,
            "event_types": event_types,
            "condition": condition,
            "departments": departments,
        },
    )


def remove_default_rule(name: str) -> None:
    op.get_bind().execute(sa.text("DELETE FROM routing_rule WHERE id = :id"), {"id": rule_id(name)})
