"""The one LISTEN helper: a notification wakes its worker, and a dropped connection is listened on again."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from shared.listen import Listening
from tests.support.platform import Platform
from tests.support.waiting import eventually


class Heard:
    """What a worker on a `Listening` saw: its connections and the payloads that woke it."""

    def __init__(self, platform: Platform) -> None:
        self.channel = f"test_listen_{uuid.uuid4().hex[:12]}"
        self.payloads: list[str] = []
        self.connections: list[int] = []
        self.listening = Listening(
            dsn=platform.dsn("notifications"),
            channel=self.channel,
            name="test listener",
            wakes_on=self._heard,
            first_delay=0.05,
        )

    def _heard(self, payload: str) -> bool:
        self.payloads.append(payload)
        return True

    async def work(self, conn: asyncpg.Connection) -> None:
        self.connections.append(conn.get_server_pid())
        while True:
            await self.listening.wait(None)


@pytest_asyncio.fixture
async def heard(platform: Platform) -> AsyncIterator[Heard]:
    heard = Heard(platform)
    running = asyncio.create_task(heard.listening.run(heard.work))
    try:
        yield heard
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def listening_pids(platform: Platform, channel: str) -> set[int]:
    rows = await platform.fetch(
        "notifications",
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query = $1",
        f'LISTEN "{channel}"',
    )
    return {row["pid"] for row in rows}


async def notify(platform: Platform, channel: str, payload: str) -> None:
    await platform.fetch("notifications", "SELECT pg_notify($1, $2)", channel, payload)


async def test_a_notification_wakes_the_worker_on_the_listening_connection(platform: Platform, heard: Heard) -> None:
    [pid] = await eventually(lambda: listening_pids(platform, heard.channel))
    await notify(platform, heard.channel, "first")

    async def woke() -> bool:
        return heard.payloads == ["first"]

    await eventually(woke)
    assert heard.connections == [pid]


async def test_a_dropped_connection_is_listened_on_again_and_what_is_sent_after_wakes_the_worker(
    platform: Platform, heard: Heard
) -> None:
    [dropped] = await eventually(lambda: listening_pids(platform, heard.channel))
    await platform.fetch("notifications", "SELECT pg_terminate_backend($1)", dropped)

    async def listening_again() -> set[int]:
        return await listening_pids(platform, heard.channel) - {dropped}

    [again] = await eventually(listening_again)
    await notify(platform, heard.channel, "after")

    async def woke() -> bool:
        return "after" in heard.payloads

    await eventually(woke)
    # The worker ran once per connection, on the connection that listens.
    assert heard.connections == [dropped, again]
