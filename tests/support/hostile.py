"""Hostile input every service must refuse as a client error (contract §1, v1.1)."""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson

# Zoned date-times whose instant falls before year 1 or after year 9999 once converted to UTC, and the
# first and last microsecond of that range, which the database driver takes for -infinity and infinity.
OUT_OF_RANGE_INSTANTS = (
    "0001-01-01T00:00:00+23:59",
    "9999-12-31T23:59:59-23:59",
    "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z",
)
# The extremes that are accepted, and must be answered without an error.
EDGE_INSTANTS = ("0001-01-01T00:00:00.000001Z", "9999-12-31T23:59:59.999998Z")


def forged_cursor(created_at: str, item_id: str | None = None) -> str:
    """A cursor shaped like the ones the API returns, holding `created_at`."""
    raw = orjson.dumps([created_at, item_id or str(uuid.uuid4())])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


FORGED_CURSORS = (
    *(forged_cursor(instant) for instant in OUT_OF_RANGE_INSTANTS),
    forged_cursor("2026-01-01T00:00:00"),  # no zone
    forged_cursor("not a date"),
    "not-a-cursor",
)


def assert_invalid(response: httpx.Response, field: str) -> None:
    """A 422 problem that names `field`."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert any(field in error["loc"] for error in response.json()["errors"]), response.text


def padded_json(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON of `size` bytes (whitespace before the closing brace): valid, and storable if read."""
    raw = orjson.dumps(body)
    return raw[:-1] + b" " * (size - len(raw)) + b"}"


async def in_chunks(body: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    """`body` as a request without Content-Length (chunked transfer encoding)."""
    for start in range(0, len(body), chunk):
        yield body[start : start + chunk]
