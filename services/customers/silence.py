"""The silence sweep: health changes with time alone once a customer falls silent, with no event to say so.

Every event that changes a factor judges the customer again in the consumer's
transaction; silence is the one factor that moves without an event. This worker
(`health-sweep`, every `CF_CUSTOMERS_HEALTH_SWEEP_INTERVAL_SECONDS`) finds the
customers silent for `CF_CUSTOMERS_HEALTH_SILENT_AFTER_DAYS` whose stored health
does not count the silence yet, and judges them again, in batches, each its own
transaction (rows picked `FOR UPDATE SKIP LOCKED`, so replicas share the work and
wait on nobody). A band that moves emits `customer.health_changed` as any other.
`GET /v1/customers/{id}` judges on read, so it shows the silence at once.
`health_at` is when the stored health last changed: judging a silent customer
again adds the silence reason, so a sweep never picks the same one twice.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.customers import health, repository, service
from services.customers.config import Settings
from shared.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)
BATCH = 500


class SilenceSweep:
    def __init__(self, *, settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._settings = settings
        self._sessionmaker = sessionmaker

    async def run(self) -> None:
        """A sweep at start, then one every interval, until cancelled; a failed sweep is tried next round."""
        while True:
            try:
                await self.sweep_once()
            except Exception as exc:
                logger.warning("health sweep failed (%s: %s); trying again next round", type(exc).__name__, exc)
            await asyncio.sleep(self._settings.customers_health_sweep_interval_seconds)

    async def sweep_once(self) -> int:
        """Judge again every customer who fell silent since its health was judged; how many."""
        judged, started = 0, datetime.now(UTC)
        if self._settings.customers_health_silence_weight == 0:
            return 0  # silence changes no score
        while True:
            async with unit_of_work(self._sessionmaker) as session:
                now = datetime.now(UTC)
                silent = await repository.silent_unjudged(
                    session, silent_before=health.silent_before(self._settings, now), judged_before=started, limit=BATCH
                )
                await service.judge_health(session, customer_ids=silent, settings=self._settings, now=now)
            judged += len(silent)
            if len(silent) < BATCH:
                return judged
