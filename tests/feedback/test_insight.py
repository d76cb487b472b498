"""Themes counted and trended, internal against external customers, and the day rollups they are read from.

Each test captures feedback at fixed `occurred_at` moments in a year of its own (centuries ago), so the time
range alone isolates it from the rest of the suite where a filter (like the theme trends') has no product.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx

from tests.feedback.conftest import capture, complaint, new_customer
from tests.support.platform import Platform

DELIVERY = "The parcel arrived late."
BILLING = "I was billed twice on one invoice."
DELIVERY_AND_BILLING = "The courier lost the parcel and the invoice billed me anyway, terrible."
PRAISE = "Wonderful courier, the parcel arrived early, thank you!"


def _a_year_of_its_own(test: int) -> int:
    """A year in the century of `test` (each test its own number): no two tests share a year."""
    return 1000 + 100 * test + random.randint(0, 99)


def _at(year: int, month: int, day: int, hour: int = 12, minute: int = 0, microsecond: int = 0) -> str:
    return datetime(year, month, day, hour, minute, 0, microsecond, UTC).isoformat()


async def _capture_at(
    client: httpx.AsyncClient, platform: Platform, occurred_at: str, text: str, **fields: Any
) -> dict[str, Any]:
    body = complaint(new_customer(), text=text, occurred_at=occurred_at, **fields)
    return await capture(client, platform, body)


async def _get(client: httpx.AsyncClient, platform: Platform, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params, headers=platform.auth("feedback:read"))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _theme_figures(captured: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the metrics' `themes` must say about `captured`, counted here from the responses."""
    figures: dict[str, dict[str, Any]] = {}
    for feedback in captured:
        for theme in feedback["themes"]:
            entry = figures.setdefault(theme, {"theme": theme, "count": 0, "complaints": 0, "negative": 0})
            entry["count"] += 1
            entry["complaints"] += feedback["kind"] == "complaint"
            entry["negative"] += feedback["sentiment"]["label"] == "negative"
    return sorted(figures.values(), key=lambda entry: (-entry["count"], entry["theme"]))


async def test_metrics_count_each_theme_with_its_complaints_and_negative_feedback(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    year, product = _a_year_of_its_own(1), f"product-{uuid.uuid4().hex[:8]}"
    captured = [
        await _capture_at(client, platform, _at(year, 3, 1), DELIVERY, product=product),
        await _capture_at(client, platform, _at(year, 3, 2), DELIVERY_AND_BILLING, product=product),
        await _capture_at(client, platform, _at(year, 3, 3), BILLING, product=product, kind="question"),
        await _capture_at(client, platform, _at(year, 4, 9), PRAISE, product=product, kind="compliment"),
        await _capture_at(client, platform, _at(year, 4, 9), "Nothing to say about it.", product=product),
    ]
    assert [sorted(feedback["themes"]) for feedback in captured] == [
        ["delivery"],
        ["billing", "delivery"],
        ["billing"],
        ["delivery"],
        [],
    ]
    assert {feedback["sentiment"]["label"] for feedback in captured[1:2]} == {"negative"}
    assert captured[3]["sentiment"]["label"] == "positive"

    themes = (await _get(client, platform, "/v1/feedback/metrics", product=product))["themes"]

    assert themes == _theme_figures(captured)
    assert themes[0] == {
        "theme": "delivery",
        "count": 3,
        "complaints": 2,
        "negative": sum(f["sentiment"]["label"] == "negative" for f in captured if "delivery" in f["themes"]),
    }
    assert themes[1]["theme"] == "billing"
    assert (themes[1]["count"], themes[1]["complaints"]) == (2, 1)


async def test_theme_trends_list_every_period_of_the_range_per_theme(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    year = next(y for y in range(_a_year_of_its_own(2), 9999) if date(y, 3, 1).weekday() == 2)
    await _capture_at(client, platform, _at(year, 3, 1, 9), DELIVERY)
    await _capture_at(client, platform, _at(year, 3, 1, 18), DELIVERY, kind="suggestion")
    await _capture_at(client, platform, _at(year, 3, 3), BILLING)
    await _capture_at(client, platform, _at(year, 4, 20), DELIVERY_AND_BILLING)
    since, until = _at(year, 3, 1, 0), _at(year, 3, 5, 0)

    days = await _get(client, platform, "/v1/feedback/themes", since=since, until=until, bucket="day")

    def day(n: int) -> str:
        return datetime(year, 3, n, tzinfo=UTC).isoformat().replace("+00:00", "Z")

    assert days == {
        "themes": [
            {
                "theme": "delivery",
                "series": [
                    {"period_start": day(1), "count": 2, "complaints": 1},
                    {"period_start": day(2), "count": 0, "complaints": 0},
                    {"period_start": day(3), "count": 0, "complaints": 0},
                    {"period_start": day(4), "count": 0, "complaints": 0},
                ],
            },
            {
                "theme": "billing",
                "series": [
                    {"period_start": day(1), "count": 0, "complaints": 0},
                    {"period_start": day(2), "count": 0, "complaints": 0},
                    {"period_start": day(3), "count": 1, "complaints": 1},
                    {"period_start": day(4), "count": 0, "complaints": 0},
                ],
            },
        ]
    }

    months = await _get(
        client, platform, "/v1/feedback/themes", since=_at(year, 2, 1, 0), until=_at(year, 5, 1, 0), bucket="month"
    )
    assert _series_of(months) == {
        "delivery": [(f"{year:04d}-02-01", 0, 0), (f"{year:04d}-03-01", 2, 1), (f"{year:04d}-04-01", 1, 1)],
        "billing": [(f"{year:04d}-02-01", 0, 0), (f"{year:04d}-03-01", 1, 1), (f"{year:04d}-04-01", 1, 1)],
    }

    weeks = await _get(client, platform, "/v1/feedback/themes", since=since, until=_at(year, 3, 15, 0), bucket="week")
    # 1 March is a Wednesday (chosen below): weeks from Monday 27 or 28 February, 3 March in the first.
    monday = (datetime(year, 3, 1) - timedelta(days=2)).date()
    mondays = [(monday + timedelta(weeks=n)).isoformat() for n in range(3)]
    assert _series_of(weeks) == {
        "delivery": [(mondays[0], 2, 1), (mondays[1], 0, 0), (mondays[2], 0, 0)],
        "billing": [(mondays[0], 1, 1), (mondays[1], 0, 0), (mondays[2], 0, 0)],
    }

    complaints_only = await _get(
        client, platform, "/v1/feedback/themes", since=since, until=until, bucket="day", kind="complaint"
    )
    assert [count for _, count, _ in _series_of(complaints_only)["delivery"]] == [1, 0, 0, 0]


def _series_of(trends: dict[str, Any]) -> dict[str, list[tuple[str, int, int]]]:
    return {
        entry["theme"]: [(p["period_start"][:10], p["count"], p["complaints"]) for p in entry["series"]]
        for entry in trends["themes"]
    }


async def test_internal_and_external_customers_are_counted_apart(client: httpx.AsyncClient, platform: Platform) -> None:
    year, product = _a_year_of_its_own(3), f"product-{uuid.uuid4().hex[:8]}"
    internal = [
        await _capture_at(client, platform, _at(year, 6, day), DELIVERY, product=product, customer_kind="internal")
        for day in (1, 2)
    ]
    external = await _capture_at(client, platform, _at(year, 6, 1), BILLING, product=product)
    since, until = _at(year, 6, 1, 0), _at(year, 6, 3, 0)

    internal_metrics = await _get(
        client,
        platform,
        "/v1/feedback/metrics",
        product=product,
        customer_kind="internal",
        bucket="week",
        since=since,
        until=until,
    )
    external_metrics = await _get(client, platform, "/v1/feedback/metrics", product=product, customer_kind="external")
    assert internal_metrics["volume"]["total"] == 2
    assert sum(period["volume"]["total"] for period in internal_metrics["series"]) == 2
    assert [theme["theme"] for theme in internal_metrics["themes"]] == ["delivery"]
    assert external_metrics["volume"]["total"] == 1
    assert [theme["theme"] for theme in external_metrics["themes"]] == ["billing"]

    trends = await _get(
        client, platform, "/v1/feedback/themes", since=since, until=until, bucket="day", customer_kind="internal"
    )
    assert _series_of(trends) == {"delivery": [(f"{year:04d}-06-01", 1, 1), (f"{year:04d}-06-02", 1, 1)]}

    page = await _get(client, platform, "/v1/feedback", product=product, customer_kind="internal")
    assert {item["id"] for item in page["items"]} == {feedback["id"] for feedback in internal}
    page = await _get(client, platform, "/v1/feedback", product=product, customer_kind="external")
    assert [item["id"] for item in page["items"]] == [external["id"]]


async def test_the_theme_filter_pages_through_the_feedback_with_that_theme(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    customer = new_customer()
    texts = [DELIVERY, BILLING, DELIVERY_AND_BILLING, DELIVERY, "Nothing to say about it.", DELIVERY]
    captured = [await capture(client, platform, complaint(customer, text=text)) for text in texts]
    with_delivery = [feedback["id"] for feedback in reversed(captured) if "delivery" in feedback["themes"]]
    assert len(with_delivery) == 4

    seen: list[str] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"customer_id": customer, "theme": "delivery", "limit": 1}
        if cursor is not None:
            params["cursor"] = cursor
        page = await _get(client, platform, "/v1/feedback", **params)
        seen += [item["id"] for item in page["items"]]
        assert all("delivery" in item["themes"] for item in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == with_delivery

    billing = await _get(client, platform, "/v1/feedback", customer_id=customer, theme="billing", kind="complaint")
    assert [item["id"] for item in billing["items"]] == [captured[2]["id"], captured[1]["id"]]
    unknown = await _get(client, platform, "/v1/feedback", customer_id=customer, theme="no-such-theme")
    assert unknown["items"] == []


async def test_figures_of_a_range_ending_mid_day_are_exact_to_the_microsecond(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    year, product = _a_year_of_its_own(4), f"product-{uuid.uuid4().hex[:8]}"
    moments = {
        "before": datetime(year, 7, 1, 11, 59, 59, 999999, UTC),
        "at_since": datetime(year, 7, 1, 12, 0, tzinfo=UTC),
        "first_evening": datetime(year, 7, 1, 23, 59, 59, 999999, UTC),
        "whole_day": datetime(year, 7, 2, 0, 0, tzinfo=UTC),
        "whole_day_late": datetime(year, 7, 3, 23, 0, tzinfo=UTC),
        "last_morning": datetime(year, 7, 4, 0, 0, tzinfo=UTC),
        "just_before_until": datetime(year, 7, 4, 5, 59, 59, 999999, UTC),
        "at_until": datetime(year, 7, 4, 6, 0, tzinfo=UTC),
    }
    captured = {
        name: await _capture_at(client, platform, moment.isoformat(), DELIVERY, product=product)
        for name, moment in moments.items()
    }
    since, until = moments["at_since"].isoformat(), moments["at_until"].isoformat()
    inside = [feedback for name, feedback in captured.items() if name not in ("before", "at_until")]

    metrics = await _get(client, platform, "/v1/feedback/metrics", product=product, since=since, until=until)
    assert metrics["volume"]["total"] == len(inside) == 6
    assert metrics["themes"] == _theme_figures(inside)
    weekly = await _get(
        client, platform, "/v1/feedback/metrics", product=product, since=since, until=until, bucket="week"
    )
    assert sum(period["volume"]["total"] for period in weekly["series"]) == len(inside)

    trends = await _get(client, platform, "/v1/feedback/themes", since=since, until=until, bucket="day")
    assert _series_of(trends)["delivery"] == [
        (f"{year:04d}-07-01", 2, 2),
        (f"{year:04d}-07-02", 1, 1),
        (f"{year:04d}-07-03", 1, 1),
        (f"{year:04d}-07-04", 2, 2),
    ]
    # Within one day: no whole day at all.
    narrow = await _get(
        client,
        platform,
        "/v1/feedback/metrics",
        product=product,
        since=moments["first_evening"].isoformat(),
        until=(moments["whole_day"] + timedelta(microseconds=1)).isoformat(),
    )
    assert narrow["volume"]["total"] == 2


async def test_the_rollups_equal_a_full_recount_after_keyed_unkeyed_and_concurrent_captures(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    year = _a_year_of_its_own(5)
    write = platform.auth("feedback:write")
    keyed = {**write, "Idempotency-Key": str(uuid.uuid4())}
    body = complaint(new_customer(), text=DELIVERY_AND_BILLING, occurred_at=_at(year, 8, 1))
    first = await client.post("/v1/feedback", json=body, headers=keyed)
    replay = await client.post("/v1/feedback", json=body, headers=keyed)
    assert (first.status_code, replay.status_code) == (201, 201)
    assert replay.headers["Idempotent-Replayed"] == "true"
    # Concurrent captures without a key go together in one statement (group commit), several on one rollup row.
    bodies = [
        complaint(
            new_customer(),
            text=random.choice([DELIVERY, BILLING, DELIVERY_AND_BILLING, PRAISE]),
            occurred_at=_at(year, 8, random.randint(1, 3), random.randint(0, 23)),
            customer_kind=random.choice(["internal", "external"]),
            kind=random.choice(["complaint", "compliment"]),
        )
        for _ in range(40)
    ]
    scales = {"nps": range(11), "csat": range(1, 6), "ces": range(1, 8)}
    bodies += [
        complaint(
            new_customer(),
            kind="survey_response",
            text=None,
            rating={"scale": scale, "value": random.choice(scales[scale])},
            occurred_at=_at(year, 8, random.randint(1, 3)),
        )
        for scale in random.choices(list(scales), k=20)
    ]
    # Without a product, on one day: the rollups' keys hold a null that must still meet its row.
    bodies += [complaint(new_customer(), text=DELIVERY, product=None, occurred_at=_at(year, 8, 2)) for _ in range(6)]
    responses = await asyncio.gather(*(client.post("/v1/feedback", json=b, headers=write) for b in bodies))
    assert {response.status_code for response in responses} == {201}
    captured = [first.json(), *(response.json() for response in responses)]
    moved = await client.patch(f"/v1/feedback/{first.json()['id']}", json={"status": "acknowledged"}, headers=write)
    assert moved.status_code == 200

    assert await _rollup_differences(platform) == []
    trends = await _get(
        client, platform, "/v1/feedback/themes", since=_at(year, 8, 1, 0), until=_at(year, 8, 4, 0), bucket="month"
    )
    delivery = [feedback for feedback in captured if "delivery" in feedback["themes"]]
    complaints = [feedback for feedback in delivery if feedback["kind"] == "complaint"]
    assert _series_of(trends)["delivery"] == [(f"{year:04d}-08-01", len(delivery), len(complaints))]


KINDS = ("complaint", "compliment", "suggestion", "question", "survey_response")
_COUNT_KINDS = [f"count(*) FILTER (WHERE kind = '{kind}')" for kind in KINDS]
# Each rollup: its keys, and what it counts as aggregates over feedback rows (written out here, not taken from
# the code under test).
_ROLLUPS = {
    "feedback_day_count": (
        ["customer_kind", "channel", "product"],
        "feedback",
        [
            "count(*)",
            *_COUNT_KINDS,
            "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value >= 9)",
            "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value IN (7, 8))",
            "count(*) FILTER (WHERE rating_scale = 'nps' AND rating_value <= 6)",
            "count(*) FILTER (WHERE rating_scale = 'csat')",
            "count(*) FILTER (WHERE rating_scale = 'csat' AND rating_value >= 4)",
            "count(*) FILTER (WHERE rating_scale = 'ces')",
            "coalesce(sum(rating_value) FILTER (WHERE rating_scale = 'ces'), 0)",
        ],
        [
            "feedback",
            *KINDS,
            "promoters",
            "passives",
            "detractors",
            "csat_responses",
            "csat_satisfied",
            "ces_responses",
            "ces_effort",
        ],
    ),
    "feedback_theme_day_count": (
        ["theme", "customer_kind", "channel", "product"],
        "feedback, unnest(themes) AS theme",
        ["count(*)", *_COUNT_KINDS, "count(*) FILTER (WHERE sentiment_label = 'negative')"],
        ["feedback", *KINDS, "negative"],
    ),
    "feedback_theme_day_total": (
        ["theme", "customer_kind"],
        "feedback, unnest(themes) AS theme",
        ["count(*)", *_COUNT_KINDS, "count(*) FILTER (WHERE sentiment_label = 'negative')"],
        ["feedback", *KINDS, "negative"],
    ),
}


async def _rollup_differences(platform: Platform) -> list[Any]:
    """Rows where a rollup (its stripes summed) differs from counting the feedback table again; empty when they
    agree."""
    checks = []
    for table, (keys, source, recounts, figures) in _ROLLUPS.items():
        grouped = ", ".join(str(n) for n in range(1, len(keys) + 2))
        stored = (
            f"SELECT day, {', '.join(keys)}, {', '.join(f'CAST(sum({f}) AS bigint)' for f in figures)} "
            f"FROM {table} GROUP BY {grouped}"
        )
        recounted = (
            f"SELECT CAST(timezone('UTC', occurred_at) AS date), {', '.join(keys)}, "
            f"{', '.join(f'CAST({r} AS bigint)' for r in recounts)} FROM {source} GROUP BY {grouped}"
        )
        checks += [f"{stored} EXCEPT ALL {recounted}", f"{recounted} EXCEPT ALL {stored}"]
        # One row per key and stripe, a null product included.
        keyed = ", ".join(str(n) for n in range(1, len(keys) + 3))
        checks.append(f"SELECT day, stripe, {', '.join(keys)} FROM {table} GROUP BY {keyed} HAVING count(*) > 1")
    day = "timezone('UTC', occurred_at)"
    day_bit = f"set_bit(CAST(B'0' AS bit(366)), CAST(extract(doy FROM {day}) AS int) - 1, 1)"
    marked = (
        f"SELECT CAST(extract(year FROM {day}) AS int), customer_kind, customer_id, "
        f"coalesce(bit_or({day_bit}) FILTER (WHERE {_UNHAPPY}), CAST(B'0' AS bit(366))), "
        f"coalesce(bit_or({day_bit}) FILTER (WHERE {_HAPPY}), CAST(B'0' AS bit(366))) "
        f"FROM feedback WHERE {_UNHAPPY} OR {_HAPPY} GROUP BY 1, 2, 3"
    )
    stored_years = "SELECT year, customer_kind, customer_id, unhappy_days, happy_days FROM feedback_customer_year"
    checks += [
        f"{stored_years} EXCEPT ALL {marked}",
        f"{marked} EXCEPT ALL {stored_years}",
        "SELECT theme, created_at, feedback_id FROM feedback_theme "
        "EXCEPT ALL SELECT theme, created_at, id FROM feedback, unnest(themes) AS theme",
        "SELECT theme, created_at, id FROM feedback, unnest(themes) AS theme "
        "EXCEPT ALL SELECT theme, created_at, feedback_id FROM feedback_theme",
    ]
    differences: list[Any] = []
    for check in checks:
        differences += [tuple(row) for row in await platform.fetch("feedback", check)]
    return differences


async def test_bad_buckets_and_ranges_are_refused_with_a_problem(client: httpx.AsyncClient, platform: Platform) -> None:
    read = platform.auth("feedback:read")
    cases = [
        ({"bucket": "year"}, "bucket"),
        ({"bucket": "day", "since": "2000-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "bucket"),
        ({"since": "2020-01-02T00:00:00Z", "until": "2020-01-01T00:00:00Z"}, "until"),
        ({"since": "not a time"}, "since"),
        ({"customer_kind": "partner"}, "customer_kind"),
        ({"kind": "rumour"}, "kind"),
    ]
    for params, field in cases:
        response = await client.get("/v1/feedback/themes", params=params, headers=read)
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [error["loc"][-1] for error in response.json()["errors"]], response.json()

    long_weeks = {"bucket": "week", "since": "1000-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert (await client.get("/v1/feedback/themes", params=long_weeks, headers=read)).status_code == 422
    ten_years = {"bucket": "month", "since": "2016-01-01T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    assert (await client.get("/v1/feedback/themes", params=ten_years, headers=read)).status_code == 200

    refused = await client.get("/v1/feedback/themes", headers=platform.auth("feedback:write"))
    assert refused.status_code == 403
    for path in ("/v1/feedback", "/v1/feedback/metrics"):
        response = await client.get(path, params={"customer_kind": "partner"}, headers=read)
        assert response.status_code == 422
    too_long = await client.get("/v1/feedback", params={"theme": "x" * 65}, headers=read)
    assert too_long.status_code == 422


async def test_whole_days_are_read_from_the_rollups_and_partial_days_from_the_feedback(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """The design the volume depends on: a whole day's figures are the rollups' (never a count of its rows), a
    partial day's are counted from its rows. Shown by adding 100 to the rollups of one day, then taking it away."""
    year, product = _a_year_of_its_own(6), f"product-{uuid.uuid4().hex[:8]}"
    await _capture_at(client, platform, _at(year, 5, 10), DELIVERY, product=product)
    day = datetime(year, 5, 10).date()
    adjust = {
        "feedback_day_count": "product = $3",
        "feedback_theme_day_count": "theme = 'delivery' AND product = $3",
        "feedback_theme_day_total": "theme = 'delivery' AND ctid IN "
        "(SELECT ctid FROM feedback_theme_day_total WHERE day = $2 AND theme = 'delivery' LIMIT 1)",
    }

    async def add(n: int) -> None:
        for table, where in adjust.items():
            await platform.fetch(
                "feedback",
                f"UPDATE {table} SET feedback = feedback + $1, complaint = complaint + $1 WHERE day = $2 AND {where}",
                n,
                day,
                *([product] if "$3" in where else []),
            )

    whole = {"since": _at(year, 5, 10, 0), "until": _at(year, 5, 11, 0)}
    partial = {"since": _at(year, 5, 10, 6), "until": _at(year, 5, 11, 0)}
    await add(100)
    try:
        assert (await _get(client, platform, "/v1/feedback/metrics", product=product, **whole))["volume"][
            "total"
        ] == 101
        themes = await _get(client, platform, "/v1/feedback/metrics", product=product, **whole)
        assert themes["themes"][0]["count"] == 101
        trend = await _get(client, platform, "/v1/feedback/themes", bucket="day", **whole)
        assert _series_of(trend)["delivery"][0][1] > 100

        assert (await _get(client, platform, "/v1/feedback/metrics", product=product, **partial))["volume"][
            "total"
        ] == 1
        themes = await _get(client, platform, "/v1/feedback/metrics", product=product, **partial)
        assert themes["themes"] == [
            {"theme": "delivery", "count": 1, "complaints": 1, "negative": themes["themes"][0]["negative"]}
        ]
        trend = await _get(client, platform, "/v1/feedback/themes", bucket="day", **partial)
        assert _series_of(trend)["delivery"] == [(day.isoformat(), 1, 1)]
    finally:
        await add(-100)
    assert await _rollup_differences(platform) == []


async def test_word_of_mouth_counts_each_unhappy_and_happy_customer_once_over_any_range(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    year = _a_year_of_its_own(7)
    a, b, c, d, e = (new_customer() for _ in range(5))
    nps_3: dict[str, Any] = {"kind": "survey_response", "text": None, "rating": {"scale": "nps", "value": 3}}
    ces_6: dict[str, Any] = {"kind": "survey_response", "text": None, "rating": {"scale": "ces", "value": 6}}
    praise: dict[str, Any] = {"kind": "compliment", "text": PRAISE}
    fields_of_each: list[tuple[str, str, dict[str, Any]]]
    fields_of_each = [
        (a, _at(year, 9, 1, 12), {}),  # in the first, partial day
        (a, _at(year, 9, 2), {}),  # and in the whole day: one customer
        (b, _at(year, 9, 2), nps_3),
        (b, _at(year, 9, 3, 9), praise),  # in the last, partial day
        (c, _at(year, 9, 3, 13), praise),  # after until
        (d, _at(year, 9, 2), {**ces_6, "customer_kind": "internal"}),
        (e, _at(year, 9, 1, 5), {}),  # before since
        (e, _at(year, 12, 31, 23), {}),
        (e, _at(year + 1, 1, 1, 1), praise),
    ]
    for customer, at, fields in fields_of_each:
        await capture(client, platform, complaint(customer, occurred_at=at, **fields))
    since, until = _at(year, 9, 1, 6), _at(year, 9, 3, 12)

    async def word_of_mouth(**params: Any) -> tuple[int, int]:
        figures = (await _get(client, platform, "/v1/feedback/metrics", **params))["word_of_mouth"]
        return figures["unhappy_customers"], figures["happy_customers"]

    assert await word_of_mouth(since=since, until=until) == (3, 1)
    assert await word_of_mouth(since=since, until=until, customer_kind="internal") == (1, 0)
    assert await word_of_mouth(since=since, until=until, customer_kind="external") == (2, 1)
    assert await word_of_mouth(since=_at(year, 9, 2, 0), until=_at(year, 9, 3, 0)) == (3, 0)
    new_year = {"since": _at(year, 12, 31, 0), "until": _at(year + 1, 1, 2, 0)}
    assert await word_of_mouth(**new_year) == (1, 1)

    # Open ranges take every year: the same as counting the feedback table.
    for params in ({}, {"until": until}, {"since": since}, {"since": since, "customer_kind": "internal"}):
        assert await word_of_mouth(**params) == await _recounted_word_of_mouth(platform, **params), params


_UNHAPPY = (
    "(kind = 'complaint' OR (rating_scale = 'nps' AND rating_value <= 6) OR (rating_scale = 'csat' AND "
    "rating_value <= 2) OR (rating_scale = 'ces' AND rating_value >= 5))"
)
_HAPPY = (
    "(kind = 'compliment' OR (rating_scale = 'nps' AND rating_value >= 9) OR (rating_scale = 'csat' AND "
    "rating_value >= 4) OR (rating_scale = 'ces' AND rating_value <= 2))"
)


async def _recounted_word_of_mouth(platform: Platform, **params: str) -> tuple[int, int]:
    conditions, args = ["true"], []
    for name, condition in (
        ("since", "occurred_at >= $"),
        ("until", "occurred_at < $"),
        ("customer_kind", "customer_kind = $"),
        ("channel", "channel = $"),
        ("product", "product = $"),
    ):
        if name in params:
            args.append(datetime.fromisoformat(params[name]) if name in ("since", "until") else params[name])
            conditions.append(f"{condition}{len(args)}")
    rows = await platform.fetch(
        "feedback",
        f"SELECT count(DISTINCT customer_id) FILTER (WHERE {_UNHAPPY}) AS unhappy, "
        f"count(DISTINCT customer_id) FILTER (WHERE {_HAPPY}) AS happy FROM feedback WHERE {' AND '.join(conditions)}",
        *args,
    )
    return int(rows[0]["unhappy"]), int(rows[0]["happy"])


async def test_word_of_mouth_per_week_and_month_equals_a_recount_of_each_period(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """A series over a closed range reads each period's whole days from the customer-year bits: the same as
    counting each period's feedback, across a new year, partial first and last days and both customer kinds."""
    year = _a_year_of_its_own(8)
    a, b, c, d, e = (new_customer() for _ in range(5))
    nps_3: dict[str, Any] = {"kind": "survey_response", "text": None, "rating": {"scale": "nps", "value": 3}}
    ces_6: dict[str, Any] = {"kind": "survey_response", "text": None, "rating": {"scale": "ces", "value": 6}}
    praise: dict[str, Any] = {"kind": "compliment", "text": PRAISE}
    internal = {"customer_kind": "internal"}
    fields_of_each: list[tuple[str, str, dict[str, Any]]] = [
        (a, _at(year, 12, 1, 3), {}),  # before since
        (a, _at(year, 12, 1, 12), {}),  # in the first, partial day
        (a, _at(year, 12, 2), {}),
        (a, _at(year, 12, 16), praise),
        (b, _at(year, 12, 31, 23), nps_3),  # one week spans the new year
        (b, _at(year + 1, 1, 1, 1), praise),
        (c, _at(year, 12, 29), {**ces_6, **internal}),
        (c, _at(year + 1, 1, 5), {**praise, **internal}),
        (d, _at(year + 1, 1, 20, 11), {}),  # in the last, partial day
        (d, _at(year + 1, 1, 20, 13), praise),  # after until
        (e, _at(year, 12, 30), {}),  # one customer under both kinds
        (e, _at(year, 12, 31), internal),
    ]
    for customer, at, fields in fields_of_each:
        await capture(client, platform, complaint(customer, occurred_at=at, **fields))
    since, until = datetime(year, 12, 1, 6, tzinfo=UTC), datetime(year + 1, 1, 20, 12, tzinfo=UTC)

    for bucket in ("week", "month"):
        for kind in ({}, {"customer_kind": "internal"}, {"customer_kind": "external"}):
            figures = await _get(
                client,
                platform,
                "/v1/feedback/metrics",
                since=since.isoformat(),
                until=until.isoformat(),
                bucket=bucket,
                **kind,
            )
            for period in figures["series"]:
                start = max(datetime.fromisoformat(period["period_start"]), since)
                end = min(datetime.fromisoformat(period["period_end"]), until)
                told = period["word_of_mouth"]
                expected = await _recounted_word_of_mouth(
                    platform, since=start.isoformat(), until=end.isoformat(), **kind
                )
                assert (told["unhappy_customers"], told["happy_customers"]) == expected, (bucket, kind, period)
            assert sum(period["word_of_mouth"]["unhappy_customers"] for period in figures["series"]) > 0


async def test_word_of_mouth_by_channel_or_product_equals_a_recount(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    """With a channel or product (which the customer-year rows do not hold) the customers told are checked
    against their feedback: the same as counting the feedback, partial days, other years and both kinds mixed."""
    year, product = _a_year_of_its_own(9), f"product-{uuid.uuid4().hex[:8]}"
    a, b, c, d = (new_customer() for _ in range(4))
    nps_3: dict[str, Any] = {"kind": "survey_response", "text": None, "rating": {"scale": "nps", "value": 3}}
    praise: dict[str, Any] = {"kind": "compliment", "text": PRAISE}
    fields_of_each: list[tuple[str, str, dict[str, Any]]] = [
        (a, _at(year, 3, 1, 3), {"channel": "email", "product": product}),  # before since
        (a, _at(year, 3, 2), {"channel": "phone", "product": product}),
        (b, _at(year, 3, 1, 12), {**nps_3, "channel": "email"}),  # in the first, partial day
        (b, _at(year, 3, 5), {**praise, "channel": "email", "product": product}),
        (c, _at(year, 3, 9, 11), {"channel": "email", "product": product, "customer_kind": "internal"}),
        (c, _at(year, 3, 9, 13), {**praise, "channel": "email"}),  # after until
        (d, _at(year + 1, 3, 2), {"channel": "email", "product": product}),  # another year
    ]
    for customer, at, fields in fields_of_each:
        await capture(client, platform, complaint(customer, occurred_at=at, **fields))
    since, until = _at(year, 3, 1, 6), _at(year, 3, 9, 12)

    for narrowed in (
        {"channel": "email"},
        {"product": product},
        {"channel": "phone", "product": product},
        {"channel": "email", "customer_kind": "internal"},
    ):
        for window in ({"since": since, "until": until}, {"since": since}, {"until": until}):
            params = {**window, **narrowed}
            figures = (await _get(client, platform, "/v1/feedback/metrics", **params))["word_of_mouth"]
            told = (figures["unhappy_customers"], figures["happy_customers"])
            assert told == await _recounted_word_of_mouth(platform, **params), params
    email = await _get(client, platform, "/v1/feedback/metrics", since=since, until=until, channel="email")
    assert (email["word_of_mouth"]["unhappy_customers"], email["word_of_mouth"]["happy_customers"]) == (2, 1)
