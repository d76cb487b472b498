"""No excuses (contract §5, v1.1): a commitment's `kind`, `kept`, `broken_because` and `excuses`.

Existing rows are judged by what is known of them: `overdue` and `met_late` are
broken as such, a cancellation after the due date is `cancelled_after_due`,
`met_on_time` is kept. Their reschedules predate `customer_agreed`, so only
those made after the due date count as excuses (and break the promise, which
was overdue by then).

Revision ID: commitments_0005
Revises: commitments_0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "commitments_0005"
down_revision: str | None = "commitments_0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS = "('promise', 'acknowledge', 'resolve', 'follow_up')"
BROKEN_BECAUSE = (
    "('overdue', 'met_late', 'rescheduled_without_agreement', 'cancelled_without_agreement', 'cancelled_after_due')"
)


def upgrade() -> None:
    op.add_column("commitment", sa.Column("kind", sa.Text(), server_default=sa.text("'promise'"), nullable=False))
    op.add_column("commitment", sa.Column("kept", sa.Boolean(), nullable=True))
    op.add_column("commitment", sa.Column("broken_because", sa.Text(), nullable=True))
    op.add_column("commitment", sa.Column("excuses", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.execute(
        """
        WITH judged AS (
            SELECT id,
                (SELECT count(*) FROM jsonb_array_elements(history) AS earlier
                 WHERE CAST(earlier->>'rescheduled_at' AS timestamptz)
                       > CAST(earlier->>'due_at' AS timestamptz)) AS late_reschedules,
                status = 'cancelled' AND cancelled_at > due_at AS cancelled_after_due
            FROM commitment
        )
        UPDATE commitment SET
            excuses = judged.late_reschedules + CASE WHEN judged.cancelled_after_due THEN 1 ELSE 0 END,
            broken_because = CASE
                WHEN status IN ('overdue', 'met_late') OR judged.late_reschedules > 0 THEN
                    CASE WHEN status = 'met_late' AND judged.late_reschedules = 0 THEN 'met_late' ELSE 'overdue' END
                WHEN judged.cancelled_after_due THEN 'cancelled_after_due'
            END
        FROM judged WHERE judged.id = commitment.id
        """
    )
    op.execute(
        """
        UPDATE commitment SET kept = CASE
            WHEN broken_because IS NOT NULL THEN false
            WHEN status = 'met_on_time' THEN true
        END
        """
    )
    op.create_check_constraint(op.f("ck_commitment_kind"), "commitment", f"kind IN {KINDS}")
    op.create_check_constraint(
        op.f("ck_commitment_broken_because"),
        "commitment",
        f"(broken_because IS NULL OR broken_because IN {BROKEN_BECAUSE}) "
        "AND ((broken_because IS NOT NULL) = (kept IS FALSE))",
    )
    op.create_index("ix_commitment_kind_created_at_id", "commitment", ["kind", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_commitment_kind_created_at_id", table_name="commitment")
    op.drop_constraint(op.f("ck_commitment_broken_because"), "commitment", type_="check")
    op.drop_constraint(op.f("ck_commitment_kind"), "commitment", type_="check")
    op.drop_column("commitment", "excuses")
    op.drop_column("commitment", "broken_because")
    op.drop_column("commitment", "kept")
    op.drop_column("commitment", "kind")
