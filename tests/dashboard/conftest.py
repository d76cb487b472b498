"""A running stack and Debian's headless Chromium, driven by Playwright, shared by the dashboard tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from playwright.async_api import Browser, async_playwright

from ops.stack import Stack
from tests.dashboard.link import Link, link_to
from tests.ops.support import running_stack

CHROMIUM = Path("/usr/bin/chromium")
# Playwright drives the system's browser; it never downloads one of its own (`playwright install`).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Pings every second, so that the page notices a silent connection within seconds.
    with running_stack(CF_SSE_PING_SECONDS="1") as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def link(stack: Stack) -> AsyncIterator[Link]:
    """The browser reaches the notifications service (and so the page's own origin) through this."""
    async with link_to(stack.url("notifications")) as relay:
        yield relay


@pytest.fixture(scope="session")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.fail(
            f"the dashboard tests drive Debian's headless Chromium at {CHROMIUM}: "
            "apt-get install -y chromium (`make pytest` installs it when missing)"
        )
    return CHROMIUM


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser(chromium: Path) -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()
