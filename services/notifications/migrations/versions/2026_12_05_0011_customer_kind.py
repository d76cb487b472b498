"""Notifications carry the event data's `customer_kind`: the inbox filters by it (contract §1, v1.1).

Existing rows take it from the CloudEvent they hold (`value`), in batches
along `(txid, seq)`; an event whose data names no `customer_kind` (or not one
of the two) keeps null. The inbox's filter walks
`(department, customer_kind, created_at, id)`.

Revision ID: notifications_0011
Revises: notifications_0010
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "notifications_0011"
down_revision: str | None = "notifications_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BATCH = 10_000
INDEX = "ix_notification_department_customer_kind_created_at_id"
_BACKFILL = sa.text(
    """
    WITH batch AS (
        SELECT txid, seq FROM notification WHERE (txid, seq) > (:txid, :seq) ORDER BY txid, seq LIMIT :batch
    ), kinds AS (
        UPDATE notification n
        SET customer_kind = (
            SELECT CASE WHEN k.kind IN ('internal', 'external') THEN k.kind END
            FROM (SELECT convert_from(n.value, 'UTF8')::jsonb -> 'data' ->> 'customer_kind' AS kind) AS k
        )
        FROM batch
        WHERE (n.txid, n.seq) = (batch.txid, batch.seq)
    )
    SELECT txid, seq FROM batch ORDER BY txid DESC, seq DESC LIMIT 1
    """
)


def upgrade() -> None:
    op.add_column("notification", sa.Column("customer_kind", sa.Text(), nullable=True))
    connection = op.get_bind()
    after = (-1, -1)
    while (
        last := connection.execute(_BACKFILL, {"txid": after[0], "seq": after[1], "batch": BATCH}).first()
    ) is not None:
        after = (last.txid, last.seq)
    op.create_index(INDEX, "notification", ["department", "customer_kind", "created_at", "id"])


def downgrade() -> None:
    op.drop_index(INDEX, table_name="notification")
    op.drop_column("notification", "customer_kind")
