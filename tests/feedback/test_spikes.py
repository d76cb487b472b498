"""Theme spikes (contract §3, v1.1): announced once per spike, across replicas, from the captures' own data.

The module's themes are its own (a taxonomy file of fresh keys), so the suite's other captures never count
here. Most tests run the check explicitly as of a moment in the past (`SpikeWatch.check(at=...)`), with
captures whose `occurred_at` is placed around it; the app's relay publishes what a check wrote.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import text

from services.feedback.app import create_app
from services.feedback.schemas import ThemeSpike
from services.feedback.spikes import COMPLAINTS_BEFORE, WINDOW_COMPLAINTS, WORKER_NAME, SpikeRule, SpikeWatch
from shared.service import ServiceRuntime
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer
from tests.support.kafka import Record, read_topic
from tests.support.platform import Platform, serve, sessions_on
from tests.support.waiting import eventually

RUN = uuid.uuid4().hex[:8]
THEMES = [f"surge_{RUN}_{n}" for n in range(8)]
HOUR = timedelta(hours=1)


def word_of(theme: str) -> str:
    """The one keyword that tags a text with `theme`."""
    return f"zq{theme.replace('_', '')}"


@pytest.fixture(scope="module")
def taxonomy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("spikes") / "themes.toml"
    path.write_text("".join(f'[themes.{theme}]\nkeywords = ["{word_of(theme)}"]\n' for theme in THEMES))
    return path


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def app(platform: Platform, taxonomy: Path) -> AsyncIterator[FastAPI]:
    # The worker checks every half second as of now; the tests' own checks are as of moments long past.
    app = create_app(
        feedback_settings(platform, feedback_taxonomy_file=taxonomy, feedback_spike_check_interval_seconds=0.5)
    )
    async with serve(app) as client:
        app.state.test_client = client
        yield app


@pytest.fixture
def client(app: FastAPI) -> httpx.AsyncClient:
    test_client: httpx.AsyncClient = app.state.test_client
    return test_client


@pytest_asyncio.fixture(loop_scope="session")
async def watch(app: FastAPI) -> SpikeWatch:
    """The app's own worker, once started (with the relay, when the producer is connected)."""
    runtime: ServiceRuntime = app.state.runtime

    async def started() -> SpikeWatch | None:
        return next(iter(runtime.running(SpikeWatch)), None)

    return await eventually(started)


async def complaints(client: httpx.AsyncClient, platform: Platform, theme: str, *moments: datetime) -> None:
    """One complaint about `theme` that occurred at each of `moments`."""
    for moment in moments:
        body = complaint(new_customer(), text=f"The {word_of(theme)} again.", occurred_at=moment.isoformat())
        created = await capture(client, platform, body)
        assert created["themes"] == [theme]


async def checked(watch: SpikeWatch, at: datetime, theme: str) -> list[dict[str, Any]]:
    """A check as of `at` (waiting while the worker holds one): what it announced of `theme`, as event data."""

    async def done() -> tuple[list[ThemeSpike]] | None:
        spikes = await watch.check(at=at)  # None while the worker holds the check's lock
        return None if spikes is None else (spikes,)

    (spikes,) = await eventually(done)
    return [spike.model_dump(mode="json") for spike in spikes if spike.theme == theme]


async def spike_events(platform: Platform, theme: str, *, until: int) -> list[dict[str, Any]]:
    """The `feedback.theme_spiking` events of `theme` on feedback.events, read until `until` of them arrived."""
    records = await read_topic(
        platform.bootstrap_servers,
        platform.topic("feedback.events"),
        where=lambda record: record.key == theme.encode(),
        until=lambda found: len(found) >= until,
        # The topic is read from its beginning, every earlier test's events too: generous on a loaded machine.
        within=60.0,
    )
    return [_event(record) for record in records]


def _event(record: Record) -> dict[str, Any]:
    event: dict[str, Any] = orjson.loads(record.value)
    return event


def moment_long_past(test: int) -> datetime:
    """A moment weeks back, a fortnight from the other tests': each checks its own window and week before."""
    return datetime.now(UTC).replace(microsecond=0) - timedelta(days=30 + 14 * test)


def z(moment: datetime) -> str:
    """A moment as the events' JSON writes it."""
    return moment.isoformat().replace("+00:00", "Z")


async def test_a_spike_is_announced_once_while_it_lasts_and_again_after_a_quiet_window(
    client: httpx.AsyncClient, platform: Platform, watch: SpikeWatch
) -> None:
    theme, at = THEMES[0], moment_long_past(0)
    # One complaint in the week before: a baseline of 1/168 per hour.
    await complaints(client, platform, theme, at - timedelta(days=2))
    await complaints(client, platform, theme, *(at - timedelta(minutes=m) for m in (50, 40, 30, 20, 10)))

    [first] = await checked(watch, at, theme)
    assert first == {
        "theme": theme,
        "window_start": z(at - HOUR),
        "window_end": z(at),
        "count": 5,
        "baseline": pytest.approx(1 / 168),
        "ratio": pytest.approx(5 * 168),
        "summary": f"Theme '{theme}' is spiking: 5 complaints in the last hour, 840.0× its baseline",
    }
    # While it lasts, and growing, nothing more is announced.
    assert await checked(watch, at + timedelta(minutes=5), theme) == []
    await complaints(client, platform, theme, *(at + timedelta(minutes=m) for m in (20, 21, 22)))
    assert await checked(watch, at + timedelta(minutes=30), theme) == []
    # A window without a spike (the last check that found one was 30 min after `at`)...
    assert await checked(watch, at + timedelta(minutes=100), theme) == []
    # ... then a new spike is announced.
    later = at + timedelta(hours=3)
    await complaints(client, platform, theme, *(later - timedelta(minutes=m) for m in (6, 5, 4, 3, 2, 1)))
    [second] = await checked(watch, later, theme)
    assert (second["count"], second["window_end"]) == (6, z(later))

    events = await spike_events(platform, theme, until=2)
    assert [event["data"] for event in events] == [first, second]
    for event in events:
        assert event["type"] == "feedback.theme_spiking"
        assert event["subject"] == theme
        assert event["customerid"] == theme
    state = await platform.fetch("feedback", "SELECT * FROM feedback_theme_spike WHERE theme = $1", theme)
    assert (state[0]["announced_at"], state[0]["spiking_at"]) == (later, later)


async def test_fewer_complaints_than_the_minimum_are_no_spike(
    client: httpx.AsyncClient, platform: Platform, watch: SpikeWatch
) -> None:
    theme, at = THEMES[1], moment_long_past(1)
    await complaints(client, platform, theme, *(at - timedelta(minutes=m) for m in (40, 30, 20, 10)))
    assert await checked(watch, at, theme) == []
    assert await platform.fetch("feedback", "SELECT 1 FROM feedback_theme_spike WHERE theme = $1", theme) == []

    await complaints(client, platform, theme, at - timedelta(minutes=5))
    [spike] = await checked(watch, at, theme)
    assert (spike["count"], spike["baseline"], spike["ratio"]) == (5, 0, None)
    assert spike["summary"] == f"Theme '{theme}' is spiking: 5 complaints in the last hour, none in the 7 days before"
    [event] = await spike_events(platform, theme, until=1)
    assert event["data"] == spike


async def test_a_theme_must_reach_the_ratio_times_its_baseline(
    app: FastAPI, client: httpx.AsyncClient, platform: Platform
) -> None:
    theme, at = THEMES[2], moment_long_past(2)
    # A day's window, so that a week before it holds 7 windows: 7 complaints there are a baseline of 1.
    daily = SpikeWatch(
        sessionmaker=app.state.runtime.sessionmaker,
        rule=SpikeRule(window=timedelta(days=1), min_count=2, ratio=3),
        interval=3600,
    )
    await complaints(client, platform, theme, *(at - timedelta(days=d, hours=1) for d in range(1, 8)))
    await complaints(client, platform, theme, at - timedelta(hours=3), at - timedelta(hours=2))
    assert await checked(daily, at, theme) == []  # 2 complaints: the minimum, but twice the baseline only

    await complaints(client, platform, theme, at - timedelta(hours=1))
    [spike] = await checked(daily, at, theme)
    assert (spike["count"], spike["baseline"], spike["ratio"]) == (3, 1.0, 3.0)
    assert spike["summary"] == f"Theme '{theme}' is spiking: 3 complaints in the last day, 3.0× its baseline"


async def test_two_replicas_checking_at_once_announce_a_spike_once(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    theme, at = THEMES[3], moment_long_past(3)
    await complaints(client, platform, theme, *(at - timedelta(minutes=m) for m in range(1, 7)))
    rule = SpikeRule.of(feedback_settings(platform))
    async with (
        sessions_on(platform.database_urls["feedback"]) as first,
        sessions_on(platform.database_urls["feedback"]) as second,
    ):
        replicas = [SpikeWatch(sessionmaker=sessions, rule=rule, interval=3600) for sessions in (first, second)]
        # Each with its connection open, so that their checks start together.
        await asyncio.gather(*(replica.check(at=at - timedelta(days=3)) for replica in replicas))
        announced: list[str] = []
        for minutes in range(5):
            rounds = await asyncio.gather(*(replica.check(at=at + timedelta(minutes=minutes)) for replica in replicas))
            announced += [spike.theme for spikes in rounds for spike in spikes or [] if spike.theme == theme]
        assert announced == [theme]

        # The theme's next spike, after a quiet window: on the same partition, behind any repeat of the first.
        later = at + timedelta(hours=3)
        await complaints(client, platform, theme, *(later - timedelta(minutes=m) for m in range(1, 6)))
        assert [spike["count"] for spike in await checked(replicas[1], later, theme)] == [5]
    events = await spike_events(platform, theme, until=2)
    assert [event["data"]["window_end"] for event in events] == [z(at), z(later)]


async def test_the_worker_announces_a_spike_as_it_happens(
    app: FastAPI, client: httpx.AsyncClient, platform: Platform, watch: SpikeWatch
) -> None:
    assert app.state.runtime.workers[WORKER_NAME] is watch
    assert app.state.runtime.is_running(WORKER_NAME)
    theme, now = THEMES[5], datetime.now(UTC)
    await complaints(client, platform, theme, *(now - timedelta(seconds=s) for s in range(1, 6)))
    [event] = await spike_events(platform, theme, until=1)
    assert event["data"]["count"] == 5
    assert event["data"]["summary"].startswith(f"Theme '{theme}' is spiking: 5 complaints in the last hour")


@pytest.mark.usefixtures("watch")
async def test_a_restarted_worker_does_not_announce_a_spike_again(
    app: FastAPI, client: httpx.AsyncClient, platform: Platform
) -> None:
    runtime: ServiceRuntime = app.state.runtime
    theme, now = THEMES[6], datetime.now(UTC)
    await complaints(client, platform, theme, *(now - timedelta(seconds=s) for s in range(1, 6)))
    [event] = await spike_events(platform, theme, until=1)

    await runtime.stop(WORKER_NAME)
    [before] = await platform.fetch("feedback", "SELECT * FROM feedback_theme_spike WHERE theme = $1", theme)
    runtime.start(
        WORKER_NAME, SpikeWatch(sessionmaker=runtime.sessionmaker, rule=SpikeRule.of(app.state.settings), interval=0.2)
    )

    async def seen_again() -> Any:
        rows = await platform.fetch("feedback", "SELECT * FROM feedback_theme_spike WHERE theme = $1", theme)
        return rows[0] if rows[0]["spiking_at"] > before["spiking_at"] else None

    # The new worker found the theme still spiking (written with the event, were there one) and announced nothing.
    after = await eventually(seen_again)
    assert after["announced_at"] == before["announced_at"] == datetime.fromisoformat(event["data"]["window_end"])


async def test_no_spike_worker_runs_without_workers(platform: Platform) -> None:
    async with serve(app := create_app(feedback_settings(platform, run_workers=False))):
        assert app.state.runtime.running(SpikeWatch) == []
        assert not app.state.runtime.is_running(WORKER_NAME)


async def test_a_check_counts_through_the_complaints_index_not_the_table(platform: Platform) -> None:
    """The statements' plans can use the partial index alone (an index-only scan). The suite's table is too small
    for the planner to prefer it, so sequential and bitmap scans are off here, and the table is vacuumed first (an
    index-only scan is costed by the pages all-visible, which depends on when autovacuum last ran: without it
    another index's bitmap scan won once): what is shown is that the index serves them."""
    at = datetime.now(UTC)
    await platform.fetch("feedback", "VACUUM (ANALYZE) feedback")
    async with sessions_on(platform.database_urls["feedback"]) as sessions, sessions() as session:
        await session.execute(text("SET LOCAL enable_seqscan = off"))
        await session.execute(text("SET LOCAL enable_bitmapscan = off"))
        plans = [
            "\n".join(
                await session.scalars(
                    text(f"EXPLAIN {statement.text}"),
                    {"start": at - HOUR, "end": at, "min_count": 5, "themes": [THEMES[0]]},
                )
            )
            for statement in (WINDOW_COMPLAINTS, COMPLAINTS_BEFORE)
        ]
    for plan in plans:
        assert "Index Only Scan using ix_feedback_complaint_occurred_at on feedback" in plan, plan
