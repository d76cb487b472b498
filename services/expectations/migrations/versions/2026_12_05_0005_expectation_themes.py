"""Expectations carry `themes` (the platform taxonomy's, `shared/themes.py`); `customer_kind` and gap indexes.

Each current expectation and each kept version gains `themes`, backfilled
here from its statement and restatement with the taxonomy the service loads
(`CF_TAXONOMY_FILE`, else `shared/taxonomy.toml`), in batches. The lists
filter by `customer_kind` along `(customer_kind, created_at, id)`; the demand
backlog reads only the gaps, by `recorded_at` (and customer kind).

Revision ID: expectations_0005
Revises: expectations_0004
Create Date: 2026-12-05
"""

import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from shared.themes import taxonomy_from_environment

revision: str = "expectations_0005"
down_revision: str | None = "expectations_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GAPS = "capability IN ('partial', 'cannot_meet')"
BATCH = 1000
NO_ID = uuid.UUID(int=0)


def upgrade() -> None:
    for table in ("expectation", "expectation_version"):
        op.add_column(
            table,
            sa.Column("themes", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'"), nullable=False),
        )
    _backfill()
    op.create_index("ix_meeting_customer_kind_created_at_id", "meeting", ["customer_kind", "created_at", "id"])
    op.create_index("ix_expectation_customer_kind_created_at_id", "expectation", ["customer_kind", "created_at", "id"])
    op.create_index("ix_expectation_gap_recorded_at", "expectation", ["recorded_at"], postgresql_where=sa.text(GAPS))
    op.create_index(
        "ix_expectation_gap_customer_kind_recorded_at",
        "expectation",
        ["customer_kind", "recorded_at"],
        postgresql_where=sa.text(GAPS),
    )


def downgrade() -> None:
    op.drop_index("ix_expectation_gap_customer_kind_recorded_at", table_name="expectation")
    op.drop_index("ix_expectation_gap_recorded_at", table_name="expectation")
    op.drop_index("ix_expectation_customer_kind_created_at_id", table_name="expectation")
    op.drop_index("ix_meeting_customer_kind_created_at_id", table_name="meeting")
    for table in ("expectation_version", "expectation"):
        op.drop_column(table, "themes")


def _backfill() -> None:
    """Themes of every existing row, BATCH rows a statement, each table walked along its primary key."""
    taxonomy = taxonomy_from_environment()
    connection = op.get_bind()
    walks = {"expectation": ("id",), "expectation_version": ("expectation_id", "version")}
    for table, key in walks.items():
        columns = ", ".join(key)
        after: tuple[object, ...] = (NO_ID, 0)[: len(key)]
        while True:
            placeholders = ", ".join(f":after{i}" for i in range(len(key)))
            rows = connection.execute(
                sa.text(
                    f"SELECT {columns}, statement, restatement FROM {table} "
                    f"WHERE ({columns}) > ({placeholders}) ORDER BY {columns} LIMIT :batch"
                ),
                {**{f"after{i}": value for i, value in enumerate(after)}, "batch": BATCH},
            ).all()
            if not rows:
                break
            for row in rows:
                themes = taxonomy.themes_of(row.statement, row.restatement)
                if themes:
                    matches = " AND ".join(f"{column} = :{column}" for column in key)
                    connection.execute(
                        sa.text(f"UPDATE {table} SET themes = :themes WHERE {matches}"),
                        {"themes": themes, **{column: getattr(row, column) for column in key}},
                    )
            after = tuple(getattr(rows[-1], column) for column in key)
