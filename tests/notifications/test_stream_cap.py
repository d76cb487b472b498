"""At most `CF_SSE_MAX_STREAMS_PER_SUBJECT` (10 by default) open live streams per token `sub` (contract §6, v1.1)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from services.notifications.stream import StreamSlots
from shared.errors import TooManyRequests
from tests.notifications.conftest import RunningService
from tests.support.platform import Platform
from tests.support.waiting import eventually

DEFAULT_CAP = 10


@contextlib.asynccontextmanager
async def opened(service: RunningService, platform: Platform, sub: str) -> AsyncIterator[httpx.Response]:
    """A live stream of `sub` over a real connection, open until the block ends (whatever its status)."""
    headers = platform.auth("notifications:read", sub=sub)
    async with (
        httpx.AsyncClient(base_url=service.server.base_url, timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", "/v1/departments/support/stream", headers=headers) as response,
    ):
        yield response


async def test_one_stream_more_than_the_cap_is_a_429_and_closing_one_frees_a_slot(
    notifications: RunningService, platform: Platform
) -> None:
    sub = f"watcher-{uuid.uuid4().hex[:8]}"
    slots: StreamSlots = notifications.app.state.stream_slots
    assert slots.limit == DEFAULT_CAP
    async with contextlib.AsyncExitStack() as streams:
        first = await streams.enter_async_context(opened(notifications, platform, sub))
        for _ in range(DEFAULT_CAP - 1):
            response = await streams.enter_async_context(opened(notifications, platform, sub))
            assert response.status_code == 200
        assert first.status_code == 200
        assert slots.held(sub) == DEFAULT_CAP

        async with opened(notifications, platform, sub) as eleventh:
            assert eleventh.status_code == 429
            assert eleventh.headers["content-type"] == "application/problem+json"
            problem = (await eleventh.aread()).decode()
            assert "too-many-streams" in problem
        async with opened(notifications, platform, f"other-{sub}") as someone_else:
            assert someone_else.status_code == 200

        await first.aclose()  # the client goes away; the server notices and gives the slot back

        async def freed() -> bool:
            return slots.held(sub) == DEFAULT_CAP - 1

        await eventually(freed, within=10)
        async with opened(notifications, platform, sub) as again:
            assert again.status_code == 200
    await eventually(lambda: _none_held(slots, sub), within=10)


async def _none_held(slots: StreamSlots, sub: str) -> bool:
    return slots.held(sub) == 0


def test_slots_are_given_back_once_and_per_sub() -> None:
    slots = StreamSlots(2)
    release_a = slots.take("a")
    slots.take("a")
    slots.take("b")
    with pytest.raises(TooManyRequests):
        slots.take("a")
    release_a()
    release_a()  # a second call gives nothing back twice
    assert (slots.held("a"), slots.held("b")) == (1, 1)
    slots.take("a")
    assert slots.held("a") == 2
