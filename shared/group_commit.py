"""Group commit: concurrent single-row writes of one kind, sent as one multi-row statement.

Under load, rows arriving while earlier ones are being written wait for the
next statement and go together: one round trip, one commit and one WAL flush
for many requests, instead of one each. A row that arrives when nothing is
being written goes at once, so a quiet service adds no latency. Every caller
returns only once its own row is committed, or with the error that kept it
out: the promise of a statement of its own.

If PostgreSQL rejects a row of a batch (a data or constraint error, so none
of the batch committed), each row is written again alone, so one bad row
fails only its own request. Any other error (a lost connection, a shutdown,
a timeout) reaches every caller of the batch and nothing is sent again:
whether a lost statement committed is unknown, and a second send could store
a row twice.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

_PARAMETER = re.compile(r"\$(\d+)")
# What a bad row makes PostgreSQL answer (SQLSTATE classes 22 and 23): the statement failed as a whole.
_REJECTED_ROW = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError)


def highest_parameter(sql: str) -> int:
    """The highest `$n` in `sql` (0 if none)."""
    return max((int(number) for number in _PARAMETER.findall(sql)), default=0)


def repeat_rows(template: str, rows: int, *, stride: int | None = None) -> str:
    """A VALUES tuple, once per row, each row's `$n` moved `stride` (by default its highest n) on.

    `repeat_rows("($1, $2, $2)", 2)` is `"($1, $2, $2), ($3, $4, $4)"`.
    """
    step = highest_parameter(template) if stride is None else stride

    def moved(offset: int) -> str:
        return _PARAMETER.sub(lambda match: f"${int(match[1]) + offset}", template)

    return ", ".join(moved(row * step) for row in range(rows))


class GroupCommit:
    """Writes rows through `statement_for(n)`, a statement taking n rows' parameters one row after another.

    At most `max_in_flight` statements at a time, each of at most `max_rows`
    rows; `observe` hears the rows of each statement sent (a metric).
    """

    def __init__(
        self,
        statement_for: Callable[[int], str],
        *,
        max_rows: int = 64,
        max_in_flight: int = 2,
        observe: Callable[[int], None] = lambda _: None,
    ) -> None:
        self._statement_for = statement_for
        self._observe = observe
        self._statements: dict[int, str] = {}
        self._max_rows = max_rows
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[Sequence[Any], asyncio.Future[None]]] = []
        self._in_flight = 0
        self._writes: set[asyncio.Task[None]] = set()
        self.statements_sent = 0

    async def write(self, pool: asyncpg.Pool, parameters: Sequence[Any]) -> None:
        """Write one row (its parameters in the statement's order); return once it is committed."""
        done = asyncio.get_running_loop().create_future()
        entry = (parameters, done)
        self._waiting.append(entry)
        if self._in_flight < self._max_in_flight:
            self._send_next(pool)
        try:
            await done
        except asyncio.CancelledError:
            # Not sent yet: it never will be. Already sent: it commits or not with its batch, as a
            # statement of its own cancelled in flight would.
            if entry in self._waiting:
                self._waiting.remove(entry)
            raise

    def _send_next(self, pool: asyncpg.Pool) -> None:
        batch, self._waiting = self._waiting[: self._max_rows], self._waiting[self._max_rows :]
        self._in_flight += 1
        task = asyncio.get_running_loop().create_task(self._send(pool, batch))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _send(self, pool: asyncpg.Pool, batch: list[tuple[Sequence[Any], asyncio.Future[None]]]) -> None:
        try:
            try:
                await self._execute(pool, batch)
            except _REJECTED_ROW as exc:
                # Rejected, so none of it committed: each row alone, so only a bad one fails.
                if len(batch) == 1:
                    _settle(batch, exc)
                else:
                    await asyncio.gather(*(self._alone(pool, entry) for entry in batch))
            except BaseException as exc:
                _settle(batch, exc)
                if not isinstance(exc, Exception):
                    raise
            else:
                _settle(batch, None)
        finally:
            self._in_flight -= 1
            if self._waiting and self._in_flight < self._max_in_flight:
                self._send_next(pool)

    async def _alone(self, pool: asyncpg.Pool, entry: tuple[Sequence[Any], asyncio.Future[None]]) -> None:
        try:
            await self._execute(pool, [entry])
        except Exception as exc:
            _settle([entry], exc)
        else:
            _settle([entry], None)

    async def _execute(self, pool: asyncpg.Pool, batch: list[tuple[Sequence[Any], asyncio.Future[None]]]) -> None:
        # Callers cancelled while waiting have left the batch; none of them is in flight here.
        parameters = list(itertools.chain.from_iterable(row for row, _ in batch))
        statement = self._statements.get(len(batch))
        if statement is None:
            statement = self._statements[len(batch)] = self._statement_for(len(batch))
        async with pool.acquire() as connection:
            await connection.execute(statement, *parameters)
        self.statements_sent += 1
        self._observe(len(batch))


def _settle(batch: list[tuple[Sequence[Any], asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, done in batch:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        elif isinstance(error, asyncio.CancelledError):
            done.cancel()
        else:
            done.set_exception(error)
