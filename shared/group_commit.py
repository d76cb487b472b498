"""Group commit: callers that each have one item to write, written together.

`await group.write(item)` returns once `write_batch([..., item, ...])` has
returned for a batch holding the item, or raises what kept it out. Under
load, items arriving while earlier ones are being written wait for the next
batch and go together: one round trip and one commit for many callers. An
item that arrives when nothing is being written goes at once, so a quiet
service adds no latency.

When a batch fails with an error `alone_on` names (a row the database
rejects: nothing of the batch committed), each item is written again alone,
so one bad item fails only its own caller. Any other error (a lost
connection, a timeout) reaches every caller of the batch and nothing is
written again: whether a lost write committed is unknown, and a second one
could store an item twice. A caller cancelled before its item was handed to
`write_batch` writes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class GroupCommit(Generic[Item]):
    """Hands the items of waiting callers to `write_batch`, at most `max_items` at a time.

    At most `max_in_flight` batches are written at once; `observe` hears the size of each batch written.
    """

    def __init__(
        self,
        write_batch: Callable[[list[Item]], Awaitable[None]],
        *,
        alone_on: tuple[type[Exception], ...] = (),
        max_items: int = 64,
        max_in_flight: int = 2,
        observe: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._write_batch = write_batch
        self._alone_on = alone_on
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._observe = observe
        self._waiting: list[tuple[Item, asyncio.Future[None]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_written = 0

    async def write(self, item: Item) -> None:
        """Write `item` with those of other callers; return once its batch is written."""
        done = asyncio.get_running_loop().create_future()
        entry = (item, done)
        self._waiting.append(entry)
        if self._in_flight < self._max_in_flight:
            self._send_next()
        try:
            await done
        except asyncio.CancelledError:
            # Not handed over yet: it never will be. Handed over: it is written or not with its batch.
            if entry in self._waiting:
                self._waiting.remove(entry)
            raise

    def _send_next(self) -> None:
        batch, self._waiting = self._waiting[: self._max_items], self._waiting[self._max_items :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        try:
            try:
                await self._written(batch)
            except self._alone_on as exc:
                if len(batch) == 1:
                    _settle(batch, exc)
                else:
                    await asyncio.gather(*(self._alone(entry) for entry in batch))
            except BaseException as exc:
                _settle(batch, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                _settle(batch, None)
        finally:
            self._in_flight -= 1
            if self._waiting and self._in_flight < self._max_in_flight:
                self._send_next()

    async def _alone(self, entry: tuple[Item, asyncio.Future[None]]) -> None:
        try:
            await self._written([entry])
        except Exception as exc:
            _settle([entry], exc)
        else:
            _settle([entry], None)

    async def _written(self, batch: list[tuple[Item, asyncio.Future[None]]]) -> None:
        await self._write_batch([item for item, _ in batch])
        self.batches_written += 1
        self._observe(len(batch))


def _settle(batch: list[tuple[Item, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)
