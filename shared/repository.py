"""The queries every table with an `id` and a `created_at` repeats, typed by its model.

A service's repository module names one per table (`meetings = Repository(Meeting)`)
and keeps its own queries beside it; like every repository, it never commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.pagination import keyset_page


class HasIdAndCreatedAt(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def created_at(self) -> datetime: ...


M = TypeVar("M", bound=HasIdAndCreatedAt)


class Repository(Generic[M]):
    def __init__(self, model: type[M]) -> None:
        self.model = model

    async def get(self, session: AsyncSession, item_id: uuid.UUID, *, for_update: bool = False) -> M | None:
        """The row, or None; `for_update` locks it (and reads it afresh) until the transaction ends."""
        return await session.get(self.model, item_id, with_for_update=for_update, populate_existing=for_update)

    async def page(
        self, session: AsyncSession, statement: Select[Any] | None = None, *, cursor: str | None, limit: int
    ) -> Sequence[M]:
        """`statement`'s rows (every row by default) newest first after `cursor`, `limit + 1` at most (`page_of`)."""
        paged = keyset_page(
            statement if statement is not None else select(self.model),
            created_at=self.model.created_at,
            item_id=self.model.id,
            cursor=cursor,
            limit=limit,
        )
        rows: Sequence[M] = (await session.scalars(paged)).all()
        return rows
