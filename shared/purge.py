"""The purge job: rows nobody can ask for any more are deleted once they pass their age.

Each service registers one `Purger` as its `purge` worker (`purging(runtime, *its own purges)`),
which every `CF_PURGE_INTERVAL_SECONDS` deletes what each `Purge` names, in batches of
`CF_PURGE_BATCH_SIZE` rows, each batch its own short transaction: the rows are picked with
`FOR UPDATE SKIP LOCKED` and deleted by `ctid` in one statement, so no lock is held for long and
nothing waits on a row someone else is changing. Every table gets the platform's purges:

- `idempotency_key` after `CF_IDEMPOTENCY_TTL_HOURS`, when the key no longer replays anyway;
- `processed_event` after `CF_PURGE_PROCESSED_EVENT_DAYS`. The consumers' exactly-once rests on this
  row: an event delivered again finds it and has no second effect. Kafka delivers an event again
  only while the topic still holds it (a rebalance, a crash before the offset commit, or a group
  whose committed offsets expired reading from the earliest), so the age must stay well above the
  topics' retention (Kafka's default: 7 days; the default age here: 30);
- `outbox_dead_event` after `CF_PURGE_DEAD_EVENT_DAYS`: until then `customer-focus outbox retry` can
  queue it again.

Every replica runs the job: the deletes are idempotent and skip the rows another replica holds, so
no leader is needed. `cf_purged_rows_total{table=...}` counts what was deleted, and each round that
deleted something logs one line. A purge that fails (the database away) is logged and tried again
in the next round; the other purges of the round go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.config import PlatformSettings
from shared.observability import Metrics
from shared.unit_of_work import unit_of_work

if TYPE_CHECKING:
    from shared.service import ServiceRuntime, Worker

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purge:
    """Rows of `table` whose `aged_by` time is more than `after` ago and that meet `condition` (SQL on `table`)."""

    table: str
    aged_by: str
    after: timedelta
    condition: str = "true"

    def statement(self) -> TextClause:
        """One batch: at most `:batch` rows picked, locked (skipping those locked elsewhere), deleted, counted."""
        return text(
            f"""
            WITH gone AS (
                DELETE FROM {self.table} WHERE ctid = ANY (ARRAY(
                    SELECT ctid FROM {self.table}
                    WHERE {self.aged_by} < now() - make_interval(secs => :age_seconds) AND ({self.condition})
                    LIMIT :batch FOR UPDATE SKIP LOCKED
                ))
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """
        )


def platform_purges(settings: PlatformSettings) -> list[Purge]:
    """The purges of the tables every service database holds (shared/tables.py)."""
    return [
        Purge("idempotency_key", aged_by="created_at", after=timedelta(hours=settings.idempotency_ttl_hours)),
        Purge("processed_event", aged_by="processed_at", after=timedelta(days=settings.purge_processed_event_days)),
        Purge("outbox_dead_event", aged_by="failed_at", after=timedelta(days=settings.purge_dead_event_days)),
    ]


class Purger:
    """Deletes, every `interval` seconds, what each purge names, `batch_size` rows per transaction."""

    def __init__(
        self,
        *,
        sessionmaker: async_sessionmaker[AsyncSession],
        metrics: Metrics,
        purges: Sequence[Purge],
        interval: float,
        batch_size: int,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._purges = [(purge, purge.statement()) for purge in purges]
        self._interval = interval
        self._batch_size = batch_size
        # Every table's count is exported from the start, at 0 until something is purged.
        self._counted = {purge.table: metrics.purged_rows.labels(purge.table) for purge in purges}

    async def run(self) -> None:
        """A round at start (a long stop leaves the most behind), then one every interval, until cancelled."""
        while True:
            await self.purge_once()
            await asyncio.sleep(self._interval)

    async def purge_once(self) -> dict[str, int]:
        """One round: each purge until nothing more is due; the rows deleted, by table."""
        purged: dict[str, int] = {}
        for purge, statement in self._purges:
            deleted = 0
            try:
                while True:
                    async with unit_of_work(self._sessionmaker) as session:
                        batch = int(await session.scalar(statement, self._parameters(purge)) or 0)
                    deleted += batch
                    self._counted[purge.table].inc(batch)
                    if batch < self._batch_size:
                        break
            except Exception as exc:
                logger.warning(
                    "purging %s failed after %d rows (%s: %s); trying again in the next round",
                    purge.table,
                    deleted,
                    type(exc).__name__,
                    exc,
                )
            purged[purge.table] = purged.get(purge.table, 0) + deleted
        if any(purged.values()):
            logger.info(
                "purged %s",
                ", ".join(f"{count} {table}" for table, count in purged.items() if count),
                extra={"purged": {table: count for table, count in purged.items() if count}},
            )
        return purged

    def _parameters(self, purge: Purge) -> dict[str, float | int]:
        return {"age_seconds": purge.after.total_seconds(), "batch": self._batch_size}


def purging(runtime: ServiceRuntime, *purges: Purge) -> tuple[str, Worker]:
    """The service's `purge` worker: the platform's purges, then the service's own (for `workers=`)."""
    settings = runtime.settings
    purger = Purger(
        sessionmaker=runtime.sessionmaker,
        metrics=runtime.metrics,
        purges=[*platform_purges(settings), *purges],
        interval=settings.purge_interval_seconds,
        batch_size=settings.purge_batch_size,
    )
    return "purge", purger
