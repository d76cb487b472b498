"""Finding feedback (GET /v1/feedback): filters, newest first, cursor paging, indexes."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.feedback.conftest import capture, complaint, new_customer
from tests.support.platform import Platform


async def _find(client: httpx.AsyncClient, platform: Platform, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/feedback", params=params, headers=platform.auth("feedback:read"))
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


async def _ids(client: httpx.AsyncClient, platform: Platform, **params: Any) -> list[str]:
    return [item["id"] for item in (await _find(client, platform, **params))["items"]]


async def test_each_filter_narrows_the_list(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    product = f"product-{uuid.uuid4().hex[:8]}"
    web_complaint = await capture(
        client,
        platform,
        complaint(customer, channel="web", tags=["vip"], product=product, occurred_at="2026-10-01T12:00:00Z"),
    )
    phone_question = await capture(
        client,
        platform,
        complaint(customer, channel="phone", kind="question", tags=["order-1"], occurred_at="2026-10-10T12:00:00Z"),
    )
    compliment = await capture(
        client,
        platform,
        complaint(customer, kind="compliment", text="Lovely!", tags=[], occurred_at="2026-10-20T12:00:00Z"),
    )
    moved = await client.patch(
        f"/v1/feedback/{compliment['id']}", json={"status": "acknowledged"}, headers=platform.auth("feedback:write")
    )
    assert moved.status_code == 200

    everything = [compliment["id"], phone_question["id"], web_complaint["id"]]
    assert await _ids(client, platform, customer_id=customer) == everything
    assert await _ids(client, platform, customer_id=customer, kind="question") == [phone_question["id"]]
    assert await _ids(client, platform, customer_id=customer, channel="web") == [web_complaint["id"]]
    assert await _ids(client, platform, customer_id=customer, status="acknowledged") == [compliment["id"]]
    assert await _ids(client, platform, product=product) == [web_complaint["id"]]
    assert await _ids(client, platform, customer_id=customer, tag="vip") == [web_complaint["id"]]
    assert await _ids(client, platform, customer_id=customer, since="2026-10-10T12:00:00Z") == everything[:2]
    assert await _ids(client, platform, customer_id=customer, until="2026-10-10T12:00:00Z") == everything[2:]
    window = {"since": "2026-10-05T00:00:00+02:00", "until": "2026-10-15T00:00:00Z"}
    assert await _ids(client, platform, customer_id=customer, **window) == [phone_question["id"]]
    assert await _ids(client, platform, customer_id=customer, kind="suggestion") == []


async def test_a_time_window_is_paged_newest_first(client: httpx.AsyncClient, platform: Platform) -> None:
    product = f"product-{uuid.uuid4().hex[:8]}"
    customer = new_customer()
    captured = [
        (await capture(client, platform, complaint(customer, product=product, occurred_at=at)))["id"]
        for at in ("2026-09-30T23:59:59Z", "2026-10-01T00:00:00Z", "2026-10-03T12:00:00Z", "2026-10-02T12:00:00Z")
    ]
    window = {"since": "2026-10-01T00:00:00Z", "until": "2026-10-03T12:00:00Z", "product": product}

    first = await _find(client, platform, **window, limit=1)
    second = await _find(client, platform, **window, limit=1, cursor=first["next_cursor"])

    # Newest captured first, whenever each occurred; the window's ends are `since` in, `until` out.
    assert [item["id"] for item in first["items"] + second["items"]] == [captured[3], captured[1]]
    assert second["next_cursor"] is None


async def test_paging_never_skips_or_repeats_while_new_feedback_arrives(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    existing = [(await capture(client, platform, complaint(customer, text=f"Issue {n}")))["id"] for n in range(7)]

    seen: list[str] = []
    arrived: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"customer_id": customer, "limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = await _find(client, platform, **params)
        seen.extend(item["id"] for item in page["items"])
        arrived.append((await capture(client, platform, complaint(customer, text="Arrived while paging")))["id"])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == list(reversed(existing))
    assert not set(arrived) & set(seen)
    newest_first = await _ids(client, platform, customer_id=customer, limit=200)
    assert newest_first == list(reversed(existing + arrived))


async def test_the_last_page_has_no_cursor(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    for _ in range(2):
        await capture(client, platform, complaint(customer))
    page = await _find(client, platform, customer_id=customer, limit=2)
    assert len(page["items"]) == 2
    assert page["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
        ({"kind": "rant"}, ["query", "kind"]),
        ({"status": "done"}, ["query", "status"]),
        ({"since": "2026-10-01T00:00:00"}, ["query", "since"]),
        ({"since": "2026-10-02T00:00:00Z", "until": "2026-10-01T00:00:00Z"}, ["query", "until"]),
    ],
    ids=["bad_cursor", "limit_0", "limit_201", "unknown_kind", "unknown_status", "since_without_zone", "until_first"],
)
async def test_bad_query_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, platform: Platform, params: dict[str, Any], loc: list[str]
) -> None:
    response = await client.get("/v1/feedback", params=params, headers=platform.auth("feedback:read"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == loc


@pytest.mark.parametrize(
    "condition",
    [
        "customer_id = 'c'",
        "customer_kind = 'internal'",
        "kind = 'complaint'",
        "channel = 'web'",
        "status = 'new'",
        "product = 'p'",
        "tags @> ARRAY['vip']",
        "occurred_at >= now() - interval '1 day'",
        "true",
    ],
)
async def test_every_list_filter_is_served_by_an_index(platform: Platform, condition: str) -> None:
    text = await platform.plan(
        "feedback", f"SELECT * FROM feedback WHERE {condition} ORDER BY created_at DESC, id DESC LIMIT 51"
    )
    assert "Seq Scan" not in text, text
    assert "Index" in text, text


async def test_the_theme_filter_walks_the_themes_own_index_newest_first(platform: Platform) -> None:
    connection = await asyncpg.connect(platform.dsn("feedback"))
    try:
        # The suite's tables are small enough for any plan; forbid the ones a large table makes slow.
        for setting in ("enable_seqscan", "enable_bitmapscan", "enable_sort"):
            await connection.execute(f"SET {setting} = off")
        plan = await connection.fetch(
            "EXPLAIN SELECT feedback.* FROM feedback JOIN feedback_theme "
            "ON feedback_theme.feedback_id = feedback.id "
            "WHERE feedback_theme.theme = 'delivery' "
            "ORDER BY feedback_theme.created_at DESC, feedback_theme.feedback_id DESC LIMIT 51"
        )
    finally:
        await connection.close()
    text = "\n".join(row[0] for row in plan)
    assert "Scan Backward using pk_feedback_theme" in text, text
    assert "Sort" not in text, text
    assert "Seq Scan" not in text, text


async def test_a_time_window_picks_its_page_from_the_range_of_one_index(platform: Platform) -> None:
    text = await platform.plan(
        "feedback",
        "SELECT feedback.* FROM feedback JOIN ("
        "SELECT id, created_at FROM (SELECT id, created_at FROM feedback "
        "WHERE occurred_at >= now() - interval '90 days' AND occurred_at < now() - interval '60 days' OFFSET 0) "
        "AS in_window ORDER BY created_at DESC, id DESC LIMIT 51) AS page ON page.id = feedback.id "
        "ORDER BY page.created_at DESC, page.id DESC",
    )
    assert "using ix_feedback_occurred_at_created_at_id on feedback" in text, text
    assert "ix_feedback_created_at_id" not in text, text
    assert "Seq Scan" not in text, text
