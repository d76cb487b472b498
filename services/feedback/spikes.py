"""Theme spikes (contract §3, v1.1): a theme whose complaints suddenly grow is announced once.

A theme spikes when its complaints that occurred in the trailing window (`CF_FEEDBACK_SPIKE_WINDOW_SECONDS`)
reach `CF_FEEDBACK_SPIKE_MIN_COUNT` and `CF_FEEDBACK_SPIKE_RATIO` times its baseline, the mean of its
complaints per window of the same length in the 7 days before the window. Each spike is one
`feedback.theme_spiking` event; while it lasts nothing more is announced, and the theme is announced again only
at a spike found once a whole window has passed since a check last found it spiking (windows that do not
overlap: not the same complaints).

`SpikeWatch` is the service's `theme-spikes` worker: at start and every `CF_FEEDBACK_SPIKE_CHECK_INTERVAL_SECONDS`
(default 10) it checks every theme, so a spike is announced at most that interval (plus one check's duration)
after the complaint that made it committed; a capture does not wait for it. One check is one transaction:
it takes a transaction-scoped advisory lock (a replica that finds it held skips the round, the holder checks
the same moment), counts, and writes each theme's new state in `feedback_theme_spike` together with its
outbox event, so a spike is announced once across replicas and restarts (the state outlives the process).

The counts read `ix_feedback_complaint_occurred_at` (complaints by `occurred_at`, their themes included): the
window's complaints, then, only for the themes that reach the minimum count there, the 7 days before. A check
reads one week of complaints at most, whatever the size of the table.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.types import Text

from services.feedback.config import Settings
from services.feedback.schemas import ThemeSpike
from shared.catalogue import FEEDBACK_THEME_SPIKING
from shared.outbox import add_event
from shared.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

BASELINE_SPAN = timedelta(days=7)
WORKER_NAME = "theme-spikes"


@dataclass(frozen=True)
class SpikeRule:
    """When a theme's count in the window is a spike (the settings' window, minimum count and ratio)."""

    window: timedelta
    min_count: int
    ratio: float

    @classmethod
    def of(cls, settings: Settings) -> SpikeRule:
        return cls(
            window=timedelta(seconds=settings.feedback_spike_window_seconds),
            min_count=settings.feedback_spike_min_count,
            ratio=settings.feedback_spike_ratio,
        )

    def baseline(self, complaints_before: int) -> float:
        """The mean complaints per window of the 7 days before, from their total."""
        return complaints_before * self.window.total_seconds() / BASELINE_SPAN.total_seconds()

    def is_spike(self, count: int, baseline: float) -> bool:
        return count >= self.min_count and count >= self.ratio * baseline


# `kind = 'complaint'` is written out, not a parameter, so that the planner matches the partial index.
WINDOW_COMPLAINTS = text(
    """
    SELECT theme, count(*) AS complaints
    FROM feedback CROSS JOIN LATERAL unnest(themes) AS theme
    WHERE kind = 'complaint' AND occurred_at > :start AND occurred_at <= :end
    GROUP BY theme HAVING count(*) >= :min_count
    """
)
COMPLAINTS_BEFORE = text(
    """
    SELECT theme, count(*) AS complaints
    FROM feedback CROSS JOIN LATERAL unnest(themes) AS theme
    WHERE kind = 'complaint' AND occurred_at > :start AND occurred_at <= :end AND theme = ANY (:themes)
    GROUP BY theme
    """
).bindparams(bindparam("themes", type_=ARRAY(Text())))


class SpikeQueries:
    """The spike check's statements: complaint counts from the partial index, and the themes' spike state."""

    _STATE = text("SELECT theme, spiking_at FROM feedback_theme_spike WHERE theme = ANY (:themes)").bindparams(
        bindparam("themes", type_=ARRAY(Text()))
    )
    _ANNOUNCED = text(
        """
        INSERT INTO feedback_theme_spike (theme, announced_at, spiking_at) VALUES (:theme, :at, :at)
        ON CONFLICT (theme) DO UPDATE SET announced_at = excluded.announced_at, spiking_at = excluded.spiking_at
        """
    )
    _STILL_SPIKING = text(
        "UPDATE feedback_theme_spike SET spiking_at = greatest(spiking_at, :at) WHERE theme = ANY (:themes)"
    ).bindparams(bindparam("themes", type_=ARRAY(Text())))
    # One check at a time across replicas; a transaction's lock, so a lost connection releases it.
    _LOCK = text(
        "SELECT pg_try_advisory_xact_lock(hashtextextended('feedback.theme_spiking', 0)) AS locked, "
        "clock_timestamp() AS now"
    )

    async def lock(self, session: AsyncSession) -> datetime | None:
        """The database's time if this transaction now holds the check, else None (another replica does)."""
        row = (await session.execute(self._LOCK)).one()
        return row.now if row.locked else None

    async def complaints_in_window(
        self, session: AsyncSession, *, start: datetime, end: datetime, min_count: int
    ) -> dict[str, int]:
        """Each theme's complaints in `(start, end]`, of the themes with at least `min_count`."""
        rows = await session.execute(WINDOW_COMPLAINTS, {"start": start, "end": end, "min_count": min_count})
        return {row.theme: row.complaints for row in rows}

    async def complaints_before(
        self, session: AsyncSession, *, themes: Sequence[str], start: datetime, end: datetime
    ) -> dict[str, int]:
        """Each of `themes`' complaints in `(start, end]`."""
        rows = await session.execute(COMPLAINTS_BEFORE, {"start": start, "end": end, "themes": list(themes)})
        return {row.theme: row.complaints for row in rows}

    async def spiking_at(self, session: AsyncSession, themes: Sequence[str]) -> dict[str, datetime]:
        """When a check last found each of `themes` spiking (those never announced are absent)."""
        rows = await session.execute(self._STATE, {"themes": list(themes)})
        return {row.theme: row.spiking_at for row in rows}

    async def announced(self, session: AsyncSession, *, theme: str, at: datetime) -> None:
        await session.execute(self._ANNOUNCED, {"theme": theme, "at": at})

    async def still_spiking(self, session: AsyncSession, *, themes: Sequence[str], at: datetime) -> None:
        if themes:
            await session.execute(self._STILL_SPIKING, {"themes": list(themes), "at": at})


class SpikeWatch:
    """The `theme-spikes` worker: checks every theme at start and every `interval` seconds, until cancelled."""

    def __init__(self, *, sessionmaker: async_sessionmaker[AsyncSession], rule: SpikeRule, interval: float) -> None:
        self._sessionmaker = sessionmaker
        self._rule = rule
        self._interval = interval
        self._queries = SpikeQueries()

    async def run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception as exc:
                logger.warning("the theme spike check failed (%s: %s); trying again", type(exc).__name__, exc)
            await asyncio.sleep(self._interval)

    async def check(self, at: datetime | None = None) -> list[ThemeSpike] | None:
        """One check as of `at` (by default the database's clock): the spikes it announced, or None when
        another replica was checking (it covers the same moment)."""
        async with unit_of_work(self._sessionmaker) as session:
            now = await self._queries.lock(session)
            if now is None:
                return None
            return await self._check(session, at or now)

    async def _check(self, session: AsyncSession, at: datetime) -> list[ThemeSpike]:
        rule, queries = self._rule, self._queries
        start = at - rule.window
        counts = await queries.complaints_in_window(session, start=start, end=at, min_count=rule.min_count)
        if not counts:
            return []
        before = await queries.complaints_before(session, themes=list(counts), start=start - BASELINE_SPAN, end=start)
        spiking = {
            theme: (count, baseline)
            for theme, count in counts.items()
            if rule.is_spike(count, baseline := rule.baseline(before.get(theme, 0)))
        }
        last_seen = await queries.spiking_at(session, list(spiking))
        announced: list[ThemeSpike] = []
        for theme, (count, baseline) in sorted(spiking.items()):
            seen = last_seen.get(theme)
            if seen is not None and seen > start:
                continue  # the spike already announced, still going on
            spike = _spike(theme, start=start, end=at, count=count, baseline=baseline, window=rule.window)
            await queries.announced(session, theme=theme, at=at)
            await add_event(session, FEEDBACK_THEME_SPIKING, data=spike, subject=theme, customer_id=theme)
            logger.info("%s", spike.summary, extra={"theme": theme, "count": count, "baseline": baseline})
            announced.append(spike)
        await queries.still_spiking(
            session, themes=[theme for theme in spiking if theme in last_seen and last_seen[theme] > start], at=at
        )
        return announced


def _spike(theme: str, *, start: datetime, end: datetime, count: int, baseline: float, window: timedelta) -> ThemeSpike:
    ratio = count / baseline if baseline else None
    against = f"{ratio:.1f}× its baseline" if ratio is not None else "none in the 7 days before"
    complaints = "1 complaint" if count == 1 else f"{count} complaints"
    return ThemeSpike(
        theme=theme,
        window_start=start,
        window_end=end,
        count=count,
        baseline=baseline,
        ratio=ratio,
        summary=f"Theme '{theme}' is spiking: {complaints} in the last {_duration(window)}, {against}",
    )


def _duration(window: timedelta) -> str:
    """`hour`, `2 hours`, `30 minutes`, `90 seconds`: the window as the summary names it."""
    seconds = int(window.total_seconds())
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds % length == 0:
            number = seconds // length
            return unit if number == 1 else f"{number} {unit}s"
    return f"{seconds} seconds"


def spike_watch(settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[str, SpikeWatch]:
    """The service's `theme-spikes` worker (for `workers=`)."""
    watch = SpikeWatch(
        sessionmaker=sessionmaker, rule=SpikeRule.of(settings), interval=settings.feedback_spike_check_interval_seconds
    )
    return WORKER_NAME, watch
