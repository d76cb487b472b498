"""Cheaper due moments (issue 20 item 3): an update that changes nothing the rollups count does not recount.

The scheduler's due-soon move (open → due_soon) changes a promise's status, but
open and due_soon both count as unmet, so the rows the update trigger of
commitments_0008/0009 computes all sum to zero and nothing is written; computing
them (each row's old and new contribution, for two grains and three rollups)
was most of the trigger's cost. The update trigger function now compares each
row's old and new values of what the rollups count (its key columns, due date,
status as the rollups tell statuses apart, completion, renegotiations, kept and
excuses) and returns at once when no row differs; any difference runs the same
upserts as before. PostgreSQL allows neither `UPDATE OF` columns nor `WHEN` on a
trigger with transition tables, so the check lives in the function.

Revision ID: commitments_0011
Revises: commitments_0010
Create Date: 2026-12-05
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from alembic import op

revision: str = "commitments_0011"
down_revision: str | None = "commitments_0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _coarser_rollups() -> ModuleType:
    """commitments_0009, whose upserts the new function runs and whose functions the downgrade restores."""
    path = next(Path(__file__).parent.glob("*_0009_coarser_rollups.py"))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def counted(r: str) -> str:
    """What row `r`'s contribution to every rollup depends on (commitments_0009's `contributions`); statuses that
    count alike (open, due_soon and overdue are all unmet) are one value."""
    unmet = f"CASE WHEN {r}.status IN ('open', 'due_soon', 'overdue') THEN 'unmet' ELSE {r}.status END"
    return (
        f"ROW({r}.due_at, {r}.department, {r}.owner_id, {r}.kind, {r}.customer_kind, {unmet}, "
        f"{r}.completed_at, {r}.renegotiations, {r}.kept, {r}.excuses)"
    )


# A row only on one side (its id changed) counts as a change.
ANY_COUNTED_CHANGE = f"""
    SELECT FROM new_rows n FULL JOIN old_rows o ON o.id = n.id
    WHERE n.id IS NULL OR o.id IS NULL OR {counted("n")} IS DISTINCT FROM {counted("o")}"""


def upgrade() -> None:
    rollups = _coarser_rollups()
    statements = "".join(f"{rollups.upsert(table, rollups.SOURCES['update'])};\n" for table in rollups.ROLLUPS)
    op.execute(
        f"""CREATE OR REPLACE FUNCTION commitment_rollup_update() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT EXISTS ({ANY_COUNTED_CHANGE}) THEN
                RETURN NULL;
            END IF;
            {statements}
            RETURN NULL;
        END $$"""
    )


def downgrade() -> None:
    rollups = _coarser_rollups()
    rollups.replace_trigger_functions(tuple(rollups.ROLLUPS))
