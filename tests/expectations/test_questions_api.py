"""POST/GET /v1/questions: classified when saved, listed by topic."""

from __future__ import annotations

import httpx

from tests.expectations.factories import question, unique
from tests.support.platform import Platform


async def test_saved_open_ended_question_has_no_guidance(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    saved = await question(client, headers, "What would make next quarter a success for you?")
    assert saved["open_ended"] is True
    assert saved["rule"] == "question_word"
    assert saved["guidance"] is None
    assert saved["topic"] == "expectations"


async def test_saved_closed_question_carries_guidance_to_reopen_it(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    saved = await question(client, headers, "Do you like the new portal?")
    assert saved["open_ended"] is False
    assert saved["rule"] == "leading_auxiliary"
    assert '"What do you like about the new portal?"' in saved["guidance"]


async def test_questions_are_listed_by_topic_in_pages(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    topic = unique("topic")
    saved = [await question(client, headers, f"What matters most about part {i}?", topic=topic) for i in range(3)]
    await question(client, headers, "What else?", topic=unique("other-topic"))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"topic": topic, "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/questions", params=params, headers=headers)).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [q["id"] for q in reversed(saved)]


async def test_question_without_text_is_rejected_naming_the_field(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    response = await client.post("/v1/questions", json={"text": "   ", "topic": "delivery"}, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert ["body", "text"] in [error["loc"] for error in response.json()["errors"]]


async def test_saving_a_question_needs_the_write_scope(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.post(
        "/v1/questions", json={"text": "What?", "topic": "t"}, headers=platform.auth("expectations:read")
    )
    assert response.status_code == 403


async def test_listing_questions_needs_a_token(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/questions")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_same_idempotency_key_saves_the_question_once(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    topic = unique("idempotent")
    body = {"text": "How do you plan your orders?", "topic": topic}
    keyed = {**headers, "Idempotency-Key": unique("key")}
    first = await client.post("/v1/questions", json=body, headers=keyed)
    again = await client.post("/v1/questions", json=body, headers=keyed)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    listed = (await client.get("/v1/questions", params={"topic": topic}, headers=headers)).json()
    assert [q["id"] for q in listed["items"]] == [first.json()["id"]]
