"""LISTEN with reconnect: the one place a connection waits on PostgreSQL's NOTIFY.

SQLAlchemy cannot LISTEN, so `Listening` holds a plain asyncpg connection.
`run(work)` connects, LISTENs on the channel, wakes once (anything
committed while nobody listened is looked at), then runs `work(conn)`;
when the connection drops or `work` raises, it closes the connection,
waits with backoff (shared/backoff.py) and starts again, until cancelled.
`work` waits between rounds with `wait(at_most)`, which returns on a
notification, after `at_most` seconds, or raises `ConnectionLost` when the
connection has gone (a notification sent then would be lost).

    listening = Listening(dsn=dsn, channel="outbox", name="outbox relay")
    await listening.run(work)   # work: `while True: ...; await listening.wait(1.0)`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn

import asyncpg

from shared.backoff import Backoff

logger = logging.getLogger(__name__)

# A connection that served this long before it dropped starts the backoff afresh.
HEALTHY_SECONDS = 1.0


class ConnectionLost(ConnectionError):
    """The LISTEN connection closed: notifications sent from now on would be missed."""


class Listening:
    """A LISTEN on `channel` that reconnects with backoff whenever its connection drops."""

    def __init__(
        self,
        *,
        dsn: str,
        channel: str,
        name: str,
        wake: asyncio.Event | None = None,
        wakes_on: Callable[[str], bool] | None = None,
        first_delay: float = 0.05,
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._name = name
        # Set by a notification (when `wakes_on(payload)` says so), by a (re)connect and by a lost connection.
        self.wake = wake if wake is not None else asyncio.Event()
        self._wakes_on = wakes_on
        self._first_delay = first_delay
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()

    async def run(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
        *,
        before_listen: Callable[[asyncpg.Connection], Awaitable[object]] | None = None,
    ) -> NoReturn:
        """Listen and run `work` (or only listen) until cancelled, reconnecting as needed.

        `before_listen(conn)` runs on each new connection first (the relay waits there for its leader lock).
        """
        backoff = Backoff(first=self._first_delay)
        loop = asyncio.get_running_loop()
        while True:
            connected_at: float | None = None
            try:
                conn: asyncpg.Connection = await asyncpg.connect(self._dsn, timeout=5)
                try:
                    if before_listen is not None:
                        await before_listen(conn)
                    conn.add_termination_listener(self._on_lost)
                    await conn.add_listener(self._channel, self._on_notify)
                    self._connection = conn
                    self._lost.clear()
                    connected_at = loop.time()
                    self.wake.set()
                    if work is None:
                        await self._until_lost()
                    else:
                        await work(conn)
                    raise ConnectionLost(f"{self._name} stopped working on its connection")
                finally:
                    self._connection = None
                    await close_quietly(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if connected_at is not None and loop.time() - connected_at >= HEALTHY_SECONDS:
                    backoff.reset()
                delay = backoff.next()
                logger.warning(
                    "%s interrupted (%s: %s); reconnecting in %.1fs", self._name, type(exc).__name__, exc, delay
                )
                await asyncio.sleep(delay)

    async def wait(self, at_most: float | None) -> None:
        """Until a notification (or `at_most` seconds), then clear the wake-up; `ConnectionLost` once it dropped."""
        if at_most is None or at_most > 0:
            # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel that lands
            # as the wake-up fires, and the worker then outlives its app (the lifespan hangs).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(at_most):
                    await self.wake.wait()
        self.wake.clear()
        if self._connection is None or self._connection.is_closed():
            raise ConnectionLost(f"the LISTEN connection of the {self._name} closed")

    async def _until_lost(self) -> None:
        # Not on `wake`, which may be shared with the worker it wakes: clearing it here could hide a wake-up.
        await self._lost.wait()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if self._wakes_on is None or self._wakes_on(payload):
            self.wake.set()

    def _on_lost(self, _conn: object) -> None:
        self._lost.set()
        self.wake.set()


async def close_quietly(conn: Any) -> None:
    """Close an asyncpg connection, or terminate it when closing takes over two seconds or fails."""
    # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancel landing as the close completes,
    # and `Listening.run` would then reconnect instead of stopping.
    try:
        async with asyncio.timeout(2):
            await conn.close()
    except Exception:
        conn.terminate()
