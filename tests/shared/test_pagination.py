"""Cursor paging never skips or repeats an item, even while new ones arrive."""

from __future__ import annotations

import uuid

import httpx

from tests.support.platform import Platform


async def test_paging_while_inserts_arrive_sees_each_item_once(probe: httpx.AsyncClient, platform: Platform) -> None:
    name = f"page-{uuid.uuid4().hex[:8]}"
    write, read = platform.auth("feedback:write"), platform.auth("feedback:read")
    created = [(await probe.post("/probes", json={"name": name}, headers=write)).json()["id"] for _ in range(25)]
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"name": name, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = (await probe.get("/probes", params=params, headers=read)).json()
        seen.extend(item["id"] for item in page["items"])
        # New items arrive between pages: they are newer, so they never shift the pages still to come.
        await probe.post("/probes", json={"name": name}, headers=write)
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen))
    assert seen == list(reversed(created))
