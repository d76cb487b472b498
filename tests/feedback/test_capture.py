"""Capturing feedback (POST /v1/feedback): every field and rule of contract §3."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.feedback.conftest import capture, complaint, new_customer, stored_count
from tests.support.platform import Platform


async def test_complaint_is_stored_with_triage_and_status_new(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    occurred = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)
    created = await capture(client, platform, complaint(customer, occurred_at=occurred.isoformat()))

    assert created["customer_id"] == customer
    assert created["customer_kind"] == "external"
    assert created["channel"] == "email"
    assert created["kind"] == "complaint"
    assert created["product"] == "kettle-2000"
    assert created["tags"] == ["order-123"]
    assert created["rating"] is None
    assert created["status"] == "new"
    assert created["history"] == []
    assert datetime.fromisoformat(created["occurred_at"]) == occurred
    assert created["sentiment"]["label"] == "negative"
    assert -1 <= created["sentiment"]["score"] < -0.05
    assert "delivery" in created["themes"]
    assert created["created_at"] == created["updated_at"]
    fetched = await client.get(f"/v1/feedback/{created['id']}", headers=platform.auth("feedback:read"))
    assert fetched.status_code == 200
    assert fetched.json() == created


async def test_an_occurred_at_in_another_zone_is_returned_as_stored_in_utc(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    created = await capture(client, platform, complaint(new_customer(), occurred_at="2026-11-01T11:30:00.123456+02:00"))
    assert created["occurred_at"] == "2026-11-01T09:30:00.123456Z"
    fetched = await client.get(f"/v1/feedback/{created['id']}", headers=platform.auth("feedback:read"))
    assert fetched.json() == created


async def test_customer_kind_internal_and_every_channel_and_kind_are_accepted(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    channels = ["web", "email", "phone", "chat", "survey", "focus_group", "meeting", "social", "in_person", "other"]
    kinds = ["complaint", "compliment", "suggestion", "question", "survey_response"]
    for index, channel in enumerate(channels):
        kind = kinds[index % len(kinds)]
        body = complaint(customer, customer_kind="internal", channel=channel, kind=kind)
        created = await capture(client, platform, body)
        assert (created["customer_kind"], created["channel"], created["kind"]) == ("internal", channel, kind)
    assert await stored_count(platform, customer) == len(channels)


async def test_occurred_at_defaults_to_the_capture_time(client: httpx.AsyncClient, platform: Platform) -> None:
    before = datetime.now(UTC)
    created = await capture(client, platform, complaint(new_customer()))
    occurred = datetime.fromisoformat(created["occurred_at"])
    assert before - timedelta(seconds=5) <= occurred <= datetime.now(UTC)
    assert created["occurred_at"] == created["created_at"]


async def test_rating_without_text_is_accepted_and_sentiment_comes_from_the_rating(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    body = complaint(new_customer(), kind="survey_response", text=None, rating={"scale": "nps", "value": 3})
    created = await capture(client, platform, body)
    assert created["text"] is None
    assert created["rating"] == {"scale": "nps", "value": 3}
    assert created["sentiment"] == {"score": -0.4, "label": "negative", "source": "rating"}
    assert created["themes"] == []


@pytest.mark.parametrize(
    ("rating", "label"),
    [
        ({"scale": "nps", "value": 0}, "negative"),
        ({"scale": "nps", "value": 8}, "neutral"),
        ({"scale": "nps", "value": 10}, "positive"),
        ({"scale": "csat", "value": 1}, "negative"),
        ({"scale": "csat", "value": 5}, "positive"),
        ({"scale": "ces", "value": 1}, "positive"),
        ({"scale": "ces", "value": 7}, "negative"),
    ],
    ids=lambda value: str(value.get("value", "")) if isinstance(value, dict) else value,
)
async def test_each_scale_accepts_its_bounds(
    client: httpx.AsyncClient, platform: Platform, rating: dict[str, Any], label: str
) -> None:
    created = await capture(client, platform, complaint(new_customer(), kind="survey_response", rating=rating))
    assert created["rating"] == rating
    assert created["sentiment"]["source"] == "text"
    rating_only = await capture(client, platform, complaint(new_customer(), text=None, rating=rating))
    assert rating_only["sentiment"]["label"] == label


async def test_text_of_ten_thousand_characters_is_accepted(client: httpx.AsyncClient, platform: Platform) -> None:
    text = ("The invoice was wrong again. " * 400)[:10_000]
    created = await capture(client, platform, complaint(new_customer(), text=text))
    assert len(created["text"]) == 10_000
    assert "billing" in created["themes"]


async def test_compliment_is_positive(client: httpx.AsyncClient, platform: Platform) -> None:
    body = complaint(new_customer(), kind="compliment", text="The support agent was friendly and really helpful!")
    created = await capture(client, platform, body)
    assert created["sentiment"]["label"] == "positive"
    assert created["sentiment"]["score"] > 0.05
    assert created["themes"] == ["support_responsiveness", "staff_attitude"]


async def test_duplicate_tags_are_kept_once_in_order(client: httpx.AsyncClient, platform: Platform) -> None:
    created = await capture(client, platform, complaint(new_customer(), tags=["vip", "order-9", "vip"]))
    assert created["tags"] == ["vip", "order-9"]


def _future() -> str:
    return (datetime.now(UTC) + timedelta(hours=1)).isoformat()


BAD_INPUT = [
    ("text_too_long", {"text": "x" * 10_001}, ["body", "text"]),
    ("no_text_and_no_rating", {"text": None}, ["body", "text"]),
    ("blank_text_and_no_rating", {"text": "   "}, ["body", "text"]),
    ("nps_above_10", {"rating": {"scale": "nps", "value": 11}}, ["body", "rating", "nps", "value"]),
    ("nps_below_0", {"rating": {"scale": "nps", "value": -1}}, ["body", "rating", "nps", "value"]),
    ("csat_0", {"rating": {"scale": "csat", "value": 0}}, ["body", "rating", "csat", "value"]),
    ("csat_6", {"rating": {"scale": "csat", "value": 6}}, ["body", "rating", "csat", "value"]),
    ("ces_0", {"rating": {"scale": "ces", "value": 0}}, ["body", "rating", "ces", "value"]),
    ("ces_8", {"rating": {"scale": "ces", "value": 8}}, ["body", "rating", "ces", "value"]),
    ("fractional_rating", {"rating": {"scale": "nps", "value": 7.5}}, ["body", "rating", "nps", "value"]),
    ("unknown_scale", {"rating": {"scale": "stars", "value": 4}}, ["body", "rating"]),
    ("rating_without_value", {"rating": {"scale": "nps"}}, ["body", "rating", "nps", "value"]),
    ("occurred_in_the_future", {"occurred_at": "FUTURE"}, ["body", "occurred_at"]),
    ("occurred_at_without_zone", {"occurred_at": "2026-11-01T09:30:00"}, ["body", "occurred_at"]),
    ("occurred_at_not_a_time", {"occurred_at": "yesterday"}, ["body", "occurred_at"]),
    ("unknown_channel", {"channel": "pigeon"}, ["body", "channel"]),
    ("unknown_kind", {"kind": "rant"}, ["body", "kind"]),
    ("missing_channel", {"channel": None}, ["body", "channel"]),
    ("empty_customer_id", {"customer_id": ""}, ["body", "customer_id"]),
    ("customer_id_of_129_chars", {"customer_id": "c" * 129}, ["body", "customer_id"]),
    ("unknown_customer_kind", {"customer_kind": "partner"}, ["body", "customer_kind"]),
    ("tags_not_a_list", {"tags": "vip"}, ["body", "tags"]),
    ("empty_tag", {"tags": ["vip", ""]}, ["body", "tags", 1]),
    ("empty_product", {"product": ""}, ["body", "product"]),
    ("unknown_field", {"ratng": 5}, ["body", "ratng"]),
    ("nul_in_text", {"text": "broken\x00kettle"}, ["body", "text"]),
    ("nul_in_customer_id", {"customer_id": "UNIQUE\x00"}, ["body", "customer_id"]),
]


@pytest.mark.parametrize(("change", "loc"), [(c, loc) for _, c, loc in BAD_INPUT], ids=[n for n, _, _ in BAD_INPUT])
async def test_bad_input_is_a_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient, platform: Platform, change: dict[str, Any], loc: list[str | int]
) -> None:
    customer = new_customer()
    body = {**complaint(customer), **change}
    if body.get("occurred_at") == "FUTURE":
        body["occurred_at"] = _future()
    if body.get("channel") is None:
        del body["channel"]
    if body["customer_id"] == "UNIQUE\x00":
        body["customer_id"] = f"{customer}\x00"
    elif "customer_id" in change:
        customer = body["customer_id"]
    response = await client.post("/v1/feedback", json=body, headers=platform.auth("feedback:write"))

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 422
    assert problem["detail"]
    assert any(error["loc"] == loc and error["msg"] for error in problem["errors"]), problem["errors"]
    assert await stored_count(platform, customer) == 0


async def test_body_that_is_not_json_is_a_422(client: httpx.AsyncClient, platform: Platform) -> None:
    headers = {**platform.auth("feedback:write"), "content-type": "application/json"}
    response = await client.post("/v1/feedback", content=b"{not json", headers=headers)
    assert response.status_code == 422
    assert response.json()["type"].endswith("malformed-json")


async def test_capture_without_a_token_is_401(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/feedback", json=complaint(new_customer()))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_capture_with_a_read_only_token_is_403(client: httpx.AsyncClient, platform: Platform) -> None:
    customer = new_customer()
    response = await client.post("/v1/feedback", json=complaint(customer), headers=platform.auth("feedback:read"))
    assert response.status_code == 403
    assert await stored_count(platform, customer) == 0


async def test_reading_with_a_write_only_token_is_403(client: httpx.AsyncClient, platform: Platform) -> None:
    created = await capture(client, platform, complaint(new_customer()))
    headers = platform.auth("feedback:write")
    assert (await client.get(f"/v1/feedback/{created['id']}", headers=headers)).status_code == 403
    assert (await client.get("/v1/feedback", headers=headers)).status_code == 403
    assert (await client.get("/v1/feedback/metrics", headers=headers)).status_code == 403


async def test_unknown_feedback_is_404(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.get(
        "/v1/feedback/00000000-0000-4000-8000-000000000000", headers=platform.auth("feedback:read")
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_malformed_feedback_id_is_a_422(client: httpx.AsyncClient, platform: Platform) -> None:
    response = await client.get("/v1/feedback/not-a-uuid", headers=platform.auth("feedback:read"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["path", "feedback_id"]
