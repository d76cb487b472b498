"""Fast at volume (issue 18 item 4): rollups as coarse as each figure allows, kept by the same triggers.

`commitment_rollup` (commitments_0008) is keyed by department, owner, kind
and customer kind: up to 4 × 60 × 4 × 2 rows a day and a month, about as many
as the promises due in a day, so a year's metrics read tens of thousands of
rows. Each figure only needs the columns it is grouped or filtered by:

- `commitment_rollup_department` (department, kind, customer kind): the
  figures per department, per kind and in total, a few dozen rows a month;
- `commitment_rollup_owner` (department, owner, customer kind): the figures
  per owner, a quarter of the full key's rows;
- `commitment_rollup` stays for the figures per kind of one owner, read
  through a new index on (owner_id, grain, bucket), as is the owner rollup.

The statement-level trigger functions of commitments_0008 now upsert all
three rollups in the write's transaction; the new rollups are backfilled.

Revision ID: commitments_0009
Revises: commitments_0008
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "commitments_0009"
down_revision: str | None = "commitments_0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Each rollup and the columns of its key after (grain, bucket).
ROLLUPS = {
    "commitment_rollup": ("department", "owner_id", "kind", "customer_kind"),
    "commitment_rollup_department": ("department", "kind", "customer_kind"),
    "commitment_rollup_owner": ("department", "owner_id", "customer_kind"),
}
NEW = ("commitment_rollup_department", "commitment_rollup_owner")
BY_OWNER = ("commitment_rollup", "commitment_rollup_owner")
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


def key(table: str) -> str:
    return ", ".join(("grain", "bucket", *ROLLUPS[table]))


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


def summed(table: str, source: str) -> str:
    """The contributions of `source` summed per row of `table`, in key order (the order locks are taken in)."""
    sums = ", ".join(f"sum({count})" for count in COUNTS)
    changed = " OR ".join(f"sum({count}) <> 0" for count in COUNTS)
    return (
        f"SELECT {key(table)}, {sums} FROM ({source}) AS c GROUP BY {key(table)} HAVING {changed} ORDER BY {key(table)}"
    )


def upsert(table: str, source: str) -> str:
    added = ", ".join(f"{count} = t.{count} + excluded.{count}" for count in COUNTS)
    return (
        f"INSERT INTO {table} AS t ({key(table)}, {', '.join(COUNTS)}) {summed(table, source)} "
        f"ON CONFLICT ({key(table)}) DO UPDATE SET {added}"
    )


def backfill(table: str) -> str:
    return f"INSERT INTO {table} ({key(table)}, {', '.join(COUNTS)}) {summed(table, contributions('commitment', 1))}"


SOURCES = {
    "insert": contributions("new_rows", 1),
    "update": contributions("new_rows", 1) + " UNION ALL " + contributions("old_rows", -1),
    "delete": contributions("old_rows", -1),
}


def replace_trigger_functions(tables: Sequence[str]) -> None:
    """Each statement's trigger function upserts every rollup of `tables` (the triggers themselves stay)."""
    for operation, source in SOURCES.items():
        statements = "".join(f"{upsert(table, source)};\n" for table in tables)
        op.execute(
            f"""CREATE OR REPLACE FUNCTION commitment_rollup_{operation}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                {statements}
                RETURN NULL;
            END $$"""
        )


def upgrade() -> None:
    for table in NEW:
        op.create_table(
            table,
            sa.Column("grain", sa.Text(), nullable=False),
            sa.Column("bucket", sa.DateTime(timezone=True), nullable=False),
            *(sa.Column(column, sa.Text(), nullable=False) for column in ROLLUPS[table]),
            *(sa.Column(count, sa.BigInteger(), nullable=False) for count in COUNTS if count != "lateness_seconds"),
            sa.Column("lateness_seconds", sa.Double(), nullable=False),
            sa.CheckConstraint("grain IN ('day', 'month')", name=op.f(f"ck_{table}_grain")),
            sa.PrimaryKeyConstraint("grain", "bucket", *ROLLUPS[table], name=op.f(f"pk_{table}")),
        )
    for table in BY_OWNER:
        op.create_index(f"ix_{table}_owner_id_grain_bucket", table, ["owner_id", "grain", "bucket"])
    # No write may slip between the backfill and the new trigger functions.
    op.execute("LOCK TABLE commitment IN SHARE ROW EXCLUSIVE MODE")
    replace_trigger_functions(tuple(ROLLUPS))
    for table in NEW:
        op.execute(backfill(table))


def downgrade() -> None:
    replace_trigger_functions(("commitment_rollup",))
    for table in BY_OWNER:
        op.drop_index(f"ix_{table}_owner_id_grain_bucket", table_name=table)
    for table in NEW:
        op.drop_table(table)
