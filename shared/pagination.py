"""Keyset (cursor) pagination, newest first.

The cursor is the last item's `(created_at, id)`; the next page asks for
rows strictly before it in `(created_at DESC, id DESC)` order, so paging
never skips or repeats an item while new ones arrive.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

import orjson
from fastapi import Query
from pydantic import BaseModel
from sqlalchemy import ColumnElement, Select, tuple_

from shared.errors import field_error
from shared.types import in_utc

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=200, description="Items per page (1-200).")]
Cursor = Annotated[str | None, Query(max_length=512, description="`next_cursor` of the previous page.")]
DEFAULT_LIMIT = 50


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def encode_cursor(created_at: datetime, item_id: uuid.UUID | int) -> str:
    raw = orjson.dumps([created_at.isoformat(), str(item_id)])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The `(created_at, id)` a cursor holds; a 422 unless it is one this API could have returned."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_at, item_id = orjson.loads(base64.urlsafe_b64decode(padded))
        # An instant in UTC, as encoded: a crafted cursor's date-time must not reach the database driver.
        return in_utc(datetime.fromisoformat(created_at)), str(item_id)
    except Exception as exc:
        raise field_error(["query", "cursor"], "is not a cursor this API returned") from exc


def keyset_page(
    statement: Select[Any],
    *,
    created_at: Any,
    item_id: Any,
    cursor: str | None,
    limit: int,
    id_type: Callable[[str], Any] = uuid.UUID,
) -> Select[Any]:
    """`statement` ordered newest first, after `cursor`, one row more than `limit`."""
    if cursor is not None:
        cursor_at, cursor_id = decode_cursor(cursor)
        try:
            typed_id = id_type(cursor_id)
        except ValueError as exc:
            raise field_error(["query", "cursor"], "is not a cursor this API returned") from exc
        after: ColumnElement[bool] = tuple_(created_at, item_id) < tuple_(cursor_at, typed_id)
        statement = statement.where(after)
    return statement.order_by(created_at.desc(), item_id.desc()).limit(limit + 1)


def page_of(rows: Sequence[T], *, limit: int, key: Callable[[T], tuple[datetime, Any]]) -> tuple[list[T], str | None]:
    """The first `limit` rows and the cursor to the rest, if any."""
    items = list(rows[:limit])
    if len(rows) > limit and items:
        return items, encode_cursor(*key(items[-1]))
    return items, None
