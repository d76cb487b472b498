"""Measuring (GET /v1/feedback/metrics): figures checked against hand-computed values."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from services.feedback.app import create_app
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer
from tests.support.platform import Platform, serve


def _product() -> str:
    return f"product-{uuid.uuid4().hex[:8]}"


async def _metrics(client: httpx.AsyncClient, platform: Platform, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/feedback/metrics", params=params, headers=platform.auth("feedback:read"))
    assert response.status_code == 200, response.text
    figures: dict[str, Any] = response.json()
    return figures


async def _rate(
    client: httpx.AsyncClient, platform: Platform, product: str, scale: str, values: list[int], **fields: Any
) -> None:
    for value in values:
        body = complaint(
            new_customer(), kind="survey_response", text=None, product=product, rating={"scale": scale, "value": value}
        )
        await capture(client, platform, {**body, **fields})


async def test_nps_is_percent_promoters_minus_percent_detractors(client: httpx.AsyncClient, platform: Platform) -> None:
    product = _product()
    await _rate(client, platform, product, "nps", [10, 10, 9, 8, 7, 6, 5, 0, 10, 9])
    await _rate(client, platform, product, "csat", [5])

    nps = (await _metrics(client, platform, product=product))["nps"]

    assert nps == {"score": 20.0, "promoters": 5, "passives": 2, "detractors": 3, "responses": 10}


async def test_csat_is_the_percent_of_four_and_five(client: httpx.AsyncClient, platform: Platform) -> None:
    product = _product()
    await _rate(client, platform, product, "csat", [5, 4, 3, 2, 1, 5, 4, 4])
    assert (await _metrics(client, platform, product=product))["csat"] == {"score": 62.5, "responses": 8}


async def test_ces_is_the_average_effort(client: httpx.AsyncClient, platform: Platform) -> None:
    product = _product()
    await _rate(client, platform, product, "ces", [1, 2, 6, 3])
    assert (await _metrics(client, platform, product=product))["ces"] == {"average": 3.0, "responses": 4}


async def test_volume_compliments_silent_dissatisfied_and_word_of_mouth(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    product = _product()
    unhappy_a, unhappy_b, happy_a, happy_b, neutral = (new_customer() for _ in range(5))
    bodies = [
        complaint(unhappy_a, product=product),
        complaint(unhappy_a, product=product),
        complaint(unhappy_b, product=product),
        complaint(unhappy_b, product=product, kind="survey_response", text=None, rating={"scale": "ces", "value": 6}),
        complaint(happy_a, product=product, kind="compliment", text="Great"),
        complaint(happy_a, product=product, kind="compliment", text="Great again"),
        complaint(happy_b, product=product, kind="compliment", text="Wonderful"),
        complaint(happy_b, product=product, kind="survey_response", text=None, rating={"scale": "csat", "value": 5}),
        complaint(neutral, product=product, kind="suggestion", text="Add a blue one"),
        complaint(neutral, product=product, kind="question", text="Does it fit?"),
    ]
    for body in bodies:
        await capture(client, platform, body)

    figures = await _metrics(client, platform, product=product)

    assert figures["volume"] == {
        "total": 10,
        "by_kind": {"complaint": 3, "compliment": 3, "suggestion": 1, "question": 1, "survey_response": 2},
    }
    assert figures["compliments_per_complaint"] == 1.0
    assert figures["silent_dissatisfied_estimate"] == {"estimate": 75.0, "complaints": 3, "complaining_share": 0.04}
    assert figures["word_of_mouth"] == {
        "unhappy_customers": 2,
        "happy_customers": 2,
        "unhappy_tell": 16.0,
        "happy_tell": 3.0,
        "people_told_bad": 32.0,
        "people_told_good": 6.0,
    }
    assert figures["bucket"] is None
    assert figures["series"] is None


async def test_the_assumptions_are_settings_shown_in_the_response(platform: Platform) -> None:
    settings = feedback_settings(
        platform, feedback_complaining_share=0.1, feedback_unhappy_tell=10, feedback_happy_tell=2
    )
    customer = new_customer()
    async with serve(create_app(settings)) as client:
        await capture(client, platform, complaint(customer))
        await capture(client, platform, complaint(customer, kind="compliment", text="Thanks"))
        figures = await _metrics(client, platform, customer_id=customer)

    assert figures["silent_dissatisfied_estimate"] == {"estimate": 10.0, "complaints": 1, "complaining_share": 0.1}
    mouth = figures["word_of_mouth"]
    assert (mouth["unhappy_tell"], mouth["happy_tell"]) == (10.0, 2.0)
    assert (mouth["people_told_bad"], mouth["people_told_good"]) == (10.0, 2.0)


async def test_no_feedback_gives_zero_counts_and_no_scores(client: httpx.AsyncClient, platform: Platform) -> None:
    figures = await _metrics(client, platform, customer_id=new_customer())
    assert figures["volume"]["total"] == 0
    assert figures["nps"] == {"score": None, "promoters": 0, "passives": 0, "detractors": 0, "responses": 0}
    assert figures["csat"] == {"score": None, "responses": 0}
    assert figures["ces"] == {"average": None, "responses": 0}
    assert figures["compliments_per_complaint"] is None
    assert figures["silent_dissatisfied_estimate"]["estimate"] == 0.0


async def test_filters_narrow_the_figures(client: httpx.AsyncClient, platform: Platform) -> None:
    customer, other = new_customer(), new_customer()
    product = _product()
    await capture(
        client, platform, complaint(customer, product=product, channel="web", occurred_at="2026-09-01T10:00:00Z")
    )
    await capture(
        client, platform, complaint(customer, product=product, channel="phone", occurred_at="2026-09-15T10:00:00Z")
    )
    await capture(
        client, platform, complaint(other, product=product, channel="web", occurred_at="2026-09-15T10:00:00Z")
    )

    async def total(**params: Any) -> int:
        return int((await _metrics(client, platform, product=product, **params))["volume"]["total"])

    assert await total() == 3
    assert await total(customer_id=customer) == 2
    assert await total(channel="web") == 2
    assert await total(since="2026-09-10T00:00:00Z") == 2
    assert await total(until="2026-09-15T10:00:00Z") == 1
    assert (
        await total(customer_id=customer, channel="web", since="2026-08-01T00:00:00Z", until="2026-10-01T00:00:00Z")
        == 1
    )


async def test_weekly_series_has_every_week_with_the_same_figures(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    product = _product()
    # Monday 2026-09-07 and Wednesday 2026-09-23; the week of 2026-09-14 has nothing.
    for value, occurred in [(10, "2026-09-07T00:00:00Z"), (0, "2026-09-13T23:59:59Z"), (9, "2026-09-23T12:00:00Z")]:
        body = complaint(new_customer(), product=product, kind="survey_response", text=None, occurred_at=occurred)
        await capture(client, platform, {**body, "rating": {"scale": "nps", "value": value}})

    figures = await _metrics(client, platform, product=product, bucket="week", until="2026-09-28T00:00:00Z")

    assert figures["bucket"] == "week"
    assert figures["nps"]["score"] == pytest.approx(100 / 3)
    series = figures["series"]
    assert [(p["period_start"], p["period_end"]) for p in series] == [
        ("2026-09-07T00:00:00Z", "2026-09-14T00:00:00Z"),
        ("2026-09-14T00:00:00Z", "2026-09-21T00:00:00Z"),
        ("2026-09-21T00:00:00Z", "2026-09-28T00:00:00Z"),
    ]
    assert [p["volume"]["total"] for p in series] == [2, 0, 1]
    assert [p["nps"]["score"] for p in series] == [0.0, None, 100.0]
    assert series[1]["word_of_mouth"]["unhappy_customers"] == 0


async def test_series_without_until_runs_to_the_current_period(client: httpx.AsyncClient, platform: Platform) -> None:
    product = _product()
    await capture(client, platform, complaint(new_customer(), product=product))
    series = (await _metrics(client, platform, product=product, bucket="month", since="2026-01-01T00:00:00Z"))["series"]
    assert series[0]["period_start"] == "2026-01-01T00:00:00Z"
    assert series[-1]["volume"]["total"] == 1
    assert sum(p["volume"]["total"] for p in series) == 1


async def test_monthly_series_spans_since_to_until(client: httpx.AsyncClient, platform: Platform) -> None:
    product = _product()
    await capture(client, platform, complaint(new_customer(), product=product, occurred_at="2026-08-31T23:00:00Z"))
    await capture(client, platform, complaint(new_customer(), product=product, occurred_at="2026-09-01T00:00:00Z"))

    figures = await _metrics(
        client, platform, product=product, bucket="month", since="2026-07-15T00:00:00Z", until="2026-10-01T00:00:00Z"
    )

    starts = [p["period_start"] for p in figures["series"]]
    assert starts == ["2026-07-01T00:00:00Z", "2026-08-01T00:00:00Z", "2026-09-01T00:00:00Z"]
    assert [p["volume"]["by_kind"]["complaint"] for p in figures["series"]] == [0, 1, 1]
    assert figures["volume"]["total"] == 2


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"bucket": "day"}, ["query", "bucket"]),
        ({"since": "2026-10-02T00:00:00Z", "until": "2026-10-01T00:00:00Z"}, ["query", "until"]),
        ({"bucket": "week", "since": "1900-01-01T00:00:00Z"}, ["query", "bucket"]),
        ({"channel": "pigeon"}, ["query", "channel"]),
    ],
    ids=["unknown_bucket", "until_first", "too_many_periods", "unknown_channel"],
)
async def test_bad_metrics_query_is_a_422_naming_the_parameter(
    client: httpx.AsyncClient, platform: Platform, params: dict[str, Any], loc: list[str]
) -> None:
    response = await client.get("/v1/feedback/metrics", params=params, headers=platform.auth("feedback:read"))
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == loc
