"""Fast at volume (issue 18 item 4): the accountability counts per day and per month, kept by triggers.

`commitment_rollup` holds, for every day and every month (UTC) promises are
due in, and each department, owner, kind and customer kind, the counts the
metrics add up. Statement-level triggers on `commitment` (with transition
tables) add each written row's new contribution and take away its old one,
in the transaction of the write: create, complete, reschedule, cancel, the
scheduler's due-soon and overdue moves and response promises all go through
them. Each statement's changes are applied in one upsert, in key order.

`BACKFILL` is the statement that builds the rollup from the table; the
volume benchmark runs the same statement after it COPYs a year of promises.

Revision ID: commitments_0008
Revises: commitments_0007
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "commitments_0008"
down_revision: str | None = "commitments_0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEY = "grain, bucket, department, owner_id, kind, customer_kind"
COUNTS = (
    "due",
    "cancelled",
    "met_on_time",
    "met_late",
    "unmet",
    "lateness_seconds",
    "renegotiations",
    "kept",
    "broken",
    "excuses",
)


def contributions(rows: str, sign: int) -> str:
    """What each row of `rows` adds (sign 1) or takes away (sign -1), once for its day and once for its month."""
    return f"""
    SELECT g.grain,
           date_trunc(g.grain, r.due_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS bucket,
           r.department, r.owner_id, r.kind, r.customer_kind,
           {sign} * (r.status <> 'cancelled')::int AS due,
           {sign} * (r.status = 'cancelled')::int AS cancelled,
           {sign} * (r.status = 'met_on_time')::int AS met_on_time,
           {sign} * (r.status = 'met_late')::int AS met_late,
           {sign} * (r.status IN ('open', 'due_soon', 'overdue'))::int AS unmet,
           {sign} * CASE WHEN r.status = 'met_late'
                         THEN extract(epoch FROM r.completed_at - r.due_at)::double precision ELSE 0 END
               AS lateness_seconds,
           {sign} * CASE WHEN r.status <> 'cancelled' THEN r.renegotiations ELSE 0 END AS renegotiations,
           {sign} * (r.kept IS TRUE)::int AS kept,
           {sign} * (r.kept IS FALSE)::int AS broken,
           {sign} * r.excuses AS excuses
    FROM {rows} r CROSS JOIN (VALUES ('day'), ('month')) AS g(grain)"""


def summed(source: str) -> str:
    """The contributions of `source` summed per rollup row, in key order (the order locks are taken in)."""
    sums = ", ".join(f"sum({count})" for count in COUNTS)
    changed = " OR ".join(f"sum({count}) <> 0" for count in COUNTS)
    return f"SELECT {KEY}, {sums} FROM ({source}) AS c GROUP BY {KEY} HAVING {changed} ORDER BY {KEY}"


def upsert(source: str) -> str:
    added = ", ".join(f"{count} = t.{count} + excluded.{count}" for count in COUNTS)
    return (
        f"INSERT INTO commitment_rollup AS t ({KEY}, {', '.join(COUNTS)}) {summed(source)} "
        f"ON CONFLICT ({KEY}) DO UPDATE SET {added}"
    )


BACKFILL = f"INSERT INTO commitment_rollup ({KEY}, {', '.join(COUNTS)}) {summed(contributions('commitment', 1))}"

TRIGGERS = {
    "insert": ("REFERENCING NEW TABLE AS new_rows", contributions("new_rows", 1)),
    "update": (
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows",
        contributions("new_rows", 1) + " UNION ALL " + contributions("old_rows", -1),
    ),
    "delete": ("REFERENCING OLD TABLE AS old_rows", contributions("old_rows", -1)),
}


def upgrade() -> None:
    op.create_table(
        "commitment_rollup",
        sa.Column("grain", sa.Text(), nullable=False),
        sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
        sa.Column("department", sa.Text(), nullable=False),
        sa.Column("owner_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("customer_kind", sa.Text(), nullable=False),
        *(sa.Column(count, sa.BigInteger(), nullable=False) for count in COUNTS if count != "lateness_seconds"),
        sa.Column("lateness_seconds", sa.Double(), nullable=False),
        sa.CheckConstraint("grain IN ('day', 'month')", name=op.f("ck_commitment_rollup_grain")),
        sa.PrimaryKeyConstraint(
            "grain", "bucket", "department", "owner_id", "kind", "customer_kind", name=op.f("pk_commitment_rollup")
        ),
    )
    # No write may slip between the backfill and the triggers.
    op.execute("LOCK TABLE commitment IN SHARE ROW EXCLUSIVE MODE")
    for operation, (referencing, source) in TRIGGERS.items():
        op.execute(
            f"""CREATE FUNCTION commitment_rollup_{operation}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {upsert(source)};
                RETURN NULL;
            END $$"""
        )
        op.execute(
            f"CREATE TRIGGER commitment_rollup_{operation} AFTER {operation.upper()} ON commitment {referencing} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION commitment_rollup_{operation}()"
        )
    op.execute(BACKFILL)


def downgrade() -> None:
    for operation in TRIGGERS:
        op.execute(f"DROP TRIGGER commitment_rollup_{operation} ON commitment")
        op.execute(f"DROP FUNCTION commitment_rollup_{operation}()")
    op.drop_table("commitment_rollup")
