"""A running stack (real processes on free ports) for tests that drive it from outside, as an operator would."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx

from ops.stack import Stack, StackOptions
from tests.support.platform import private_directory


@contextlib.contextmanager
def running_stack(**environment: str) -> Iterator[Stack]:
    """Every service, an embedded PostgreSQL and broker, in a private data dir; stopped afterwards."""
    with private_directory("cf-ops-") as data_dir:
        options = StackOptions(
            data_dir=data_dir,
            base_port=0,
            broker_port=0,
            environment={"CF_LOG_LEVEL": "WARNING", **environment},
            ready_timeout_seconds=120,
        )
        # The caller's CF_* settings would point the stack elsewhere; it runs on its own.
        stack = Stack(
            options, environ={k: v for k, v in os.environ.items() if not k.startswith("CF_")}, out=io.StringIO()
        )
        with stack:
            asyncio.run(_first_event_routed(stack))
            yield stack


async def _first_event_routed(stack: Stack) -> None:
    """Wait until an event flows end to end: the consumers' group has formed, so timings measure steady state."""
    customer_id = f"warm-up-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.url("feedback"), headers=auth(stack)) as client:
        suggestion = {"customer_id": customer_id, "channel": "web", "kind": "suggestion", "text": "Warm-up."}
        (await client.post("/v1/feedback", json=suggestion)).raise_for_status()
    await wait_for_inbox(stack, "production", customer_id, count=1, within=60.0)


def auth(stack: Stack) -> dict[str, str]:
    return {"Authorization": f"Bearer {stack.token}"}


async def inbox(stack: Stack, department: str, customer_id: str) -> list[dict[str, Any]]:
    """The department's notifications about one customer, newest first (the whole inbox, read page by page)."""
    found: list[dict[str, Any]] = []
    params: dict[str, str | int] = {"limit": 200}
    async with httpx.AsyncClient(base_url=stack.url("notifications"), headers=auth(stack)) as client:
        while True:
            response = await client.get(f"/v1/departments/{department}/notifications", params=params)
            response.raise_for_status()
            page = response.json()
            found += [item for item in page["items"] if item["customer_id"] == customer_id]
            if page["next_cursor"] is None:
                return found
            params["cursor"] = page["next_cursor"]


async def wait_for_inbox(
    stack: Stack, department: str, customer_id: str, *, count: int, within: float = 10.0
) -> list[dict[str, Any]]:
    """Poll the inbox until it holds `count` notifications about the customer."""
    deadline = time.monotonic() + within
    while len(items := await inbox(stack, department, customer_id)) < count:
        assert time.monotonic() < deadline, f"{department} got {len(items)} of {count} notifications for {customer_id}"
        await asyncio.sleep(0.05)
    return items


async def post_complaint(stack: Stack, customer_id: str, text: str = "The delivery arrived broken.") -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=stack.url("feedback"), headers=auth(stack)) as client:
        response = await client.post(
            "/v1/feedback", json={"customer_id": customer_id, "channel": "web", "kind": "complaint", "text": text}
        )
    assert response.status_code == 201, response.text
    feedback: dict[str, Any] = response.json()
    return feedback
