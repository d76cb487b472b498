"""The live stream: one feed per process, shared by every listener.

The feed LISTENs for new notifications and, per wake-up, reads what was
added with one query, then hands each department's share to that
department's listeners; a thousand listeners cost a thousand queue puts, not
a thousand queries. Positions are (transaction id, sequence) and only rows
whose transaction is older than every running one of this database are read
(the cluster's other databases never write here, so their transactions are
not waited for), so a row that commits late is never skipped. A listener
that resumes (`Last-Event-ID`) or falls behind catches up from the database,
then joins the live feed.

Each token `sub` holds at most `CF_SSE_MAX_STREAMS_PER_SUBJECT` open streams
in a process (`StreamSlots`); one more is a 429. The count is per process:
behind a load balancer over N replicas a `sub` may hold up to N times as many.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sse_starlette import EventSourceResponse
from starlette.types import Receive, Scope, Send

from services.notifications import repository
from services.notifications.repository import StreamItem
from shared.errors import TooManyRequests
from shared.listen import Listening
from shared.observability import Metrics
from shared.unit_of_work import unit_of_work

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "notification"
Position = tuple[int, int]
_PAGE = 500
_SWEEP_SECONDS = 1.0
_UNSETTLED_RECHECK_SECONDS = 0.02


class StreamSlots:
    """The live streams each token `sub` holds open in this process, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def held(self, sub: str) -> int:
        return self._held.get(sub, 0)

    def take(self, sub: str) -> Callable[[], None]:
        """A slot for one more stream of `sub` (else a 429); call what it returns, once, when the stream ends."""
        held = self._held.get(sub, 0)
        if held >= self.limit:
            raise TooManyRequests(
                f"This token's subject has {held} live streams open, the most allowed "
                "(CF_SSE_MAX_STREAMS_PER_SUBJECT); close one first.",
                slug="too-many-streams",
            )
        self._held[sub] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._held.get(sub, 1) - 1
            if left > 0:
                self._held[sub] = left
            else:
                self._held.pop(sub, None)

        return release


class HeldStream(EventSourceResponse):
    """An event stream that gives its `StreamSlots` slot back when it ends, however it ends."""

    def __init__(self, content: Any, *, ping: float, release: Callable[[], None]) -> None:
        super().__init__(content, ping=ping)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class FellBehind(Exception):
    """The listener's queue overflowed; it must catch up from the database."""


class Listener:
    """One stream's view of the feed: live items of its department after `start`."""

    def __init__(self, department: str, start: Position, size: int) -> None:
        self.department = department
        self.start = start
        self._queue: asyncio.Queue[StreamItem] = asyncio.Queue(size)
        self._behind = False

    def offer(self, item: StreamItem) -> None:
        if self._behind:
            return
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self._behind = True

    async def next(self) -> StreamItem:
        if self._behind:
            raise FellBehind
        return await self._queue.get()


class NotificationFeed:
    """Follows the notification table and fans new rows out to listeners by department."""

    def __init__(self, *, dsn: str, queue_size: int, metrics: Metrics) -> None:
        self._listening = Listening(dsn=dsn, channel=NOTIFY_CHANNEL, name="stream feed", first_delay=0.2)
        self._queue_size = queue_size
        self.position: Position = (0, 0)
        self.ready = asyncio.Event()
        self._listeners: dict[str, set[Listener]] = defaultdict(set)
        self.queries = Counter(
            "cf_stream_feed_queries", "Queries the live-stream feed made.", registry=metrics.registry
        )
        self.listening = Gauge("cf_stream_listeners", "Open live streams.", registry=metrics.registry)
        self.catch_up_reads = Counter(
            "cf_stream_catch_up_reads",
            "Database reads by streams catching up (resumed, or fallen behind the live feed).",
            registry=metrics.registry,
        )

    def subscribe(self, department: str) -> Listener:
        listener = Listener(department, self.position, self._queue_size)
        self._listeners[department].add(listener)
        self.listening.inc()
        return listener

    def unsubscribe(self, listener: Listener) -> None:
        listeners = self._listeners.get(listener.department)
        if listeners is not None and listener in listeners:
            listeners.discard(listener)
            self.listening.dec()

    async def run(self) -> None:
        """Follow the table until cancelled; reconnects to the database as needed."""
        await self._listening.run(self._follow)

    async def _follow(self, conn: asyncpg.Connection) -> None:
        if not self.ready.is_set():
            self.position = await repository.settled_position(conn)
            self.ready.set()
        while True:
            unsettled = await self._read(conn)
            await self._listening.wait(_UNSETTLED_RECHECK_SECONDS if unsettled else _SWEEP_SECONDS)

    async def _read(self, conn: asyncpg.Connection) -> bool:
        """Hand out everything settled since the last read; True if newer rows still wait to settle."""
        while True:
            self.queries.inc()
            if not any(self._listeners.values()):
                # Nobody listens: only move on, so a new listener starts from now. A stream that started while
                # the position was read starts from the old one: then the rows up to the new one are its, and
                # are read and handed out as below, not skipped.
                settled = await repository.settled_position(conn)
                if not any(self._listeners.values()):
                    self.position = max(self.position, settled)
                    return False
                continue
            items, unsettled = await repository.settled_after(conn, self.position, limit=_PAGE)
            for item in items:
                for listener in self._listeners.get(item.department, ()):
                    listener.offer(item)
            if items:
                self.position = items[-1].position
            if len(items) < _PAGE:
                return unsettled


async def department_stream(
    *,
    feed: NotificationFeed,
    sessionmaker: async_sessionmaker[AsyncSession],
    department: str,
    after: Position | None,
) -> AsyncIterator[StreamItem]:
    """The department's notifications after `after` (or from now), first from the database, then live."""
    listener = feed.subscribe(department)
    position = after if after is not None else listener.start
    try:
        while True:
            while position < listener.start:
                feed.catch_up_reads.inc()
                async with unit_of_work(sessionmaker) as session:
                    page = await repository.department_between(
                        session, department=department, after=position, upto=listener.start, limit=_PAGE
                    )
                for item in page:
                    yield item
                position = page[-1].position if len(page) == _PAGE else listener.start
            try:
                item = await listener.next()
            except FellBehind:
                feed.unsubscribe(listener)
                listener = feed.subscribe(department)
                continue
            if item.position > position:
                yield item
                position = item.position
    finally:
        feed.unsubscribe(listener)
