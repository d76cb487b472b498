"""The dashboard's trend charts and spike notifications in headless Chromium, on a stack of their own.

The stack is this module's own, so that the feedback it holds is what these tests captured: the first
look at the page (before any test posts) shows the empty charts, and the weeks the tests write into
hold only their feedback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser

from ops.stack import Stack
from shared.auth import mint_token
from tests.dashboard.link import Link
from tests.dashboard.test_dashboard import ARTIFACTS, open_dashboard
from tests.ops.support import auth, running_stack

WEEKS = 12


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # Three complaints about one theme within ten minutes are a spike, checked every second.
    with running_stack(
        CF_SSE_PING_SECONDS="1",
        CF_FEEDBACK_SPIKE_MIN_COUNT="3",
        CF_FEEDBACK_SPIKE_WINDOW_SECONDS="600",
        CF_FEEDBACK_SPIKE_CHECK_INTERVAL_SECONDS="1",
    ) as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session", autouse=True)
async def first_look(browser: Browser, stack: Stack, link: Link) -> dict[str, str]:
    """The production dashboard's charts before any test of this module posted feedback (the stack's
    only feedback is its warm-up suggestion, which has no score and no theme)."""
    async with open_dashboard(browser, stack, link, "production", token=stack.dashboard_token("production")) as page:
        await page.wait_for_selector("#nps-trend .empty:not(.loading)", timeout=10_000)
        await page.wait_for_selector("#themes-chart .empty:not(.loading)", timeout=10_000)
        return {
            "nps": await page.inner_text("#nps-trend"),
            "themes": await page.inner_text("#themes-chart"),
            "nps_error": await page.inner_text("#nps-trend-error"),
            "themes_error": await page.inner_text("#themes-error"),
            "svg": str(await page.locator("#nps-trend svg, #themes-chart svg").count()),
        }


async def test_with_no_scores_yet_the_charts_say_so(first_look: dict[str, str]) -> None:
    assert first_look["nps"] == "No scores yet in the last 12 weeks."
    assert first_look["themes"] == "No themes yet in the last 12 weeks."
    assert first_look["svg"] == "0"
    assert first_look["nps_error"] == first_look["themes_error"] == ""


def this_monday() -> date:
    today = datetime.now(UTC).date()
    return today - timedelta(days=today.weekday())


def week_of(weeks_ago: int) -> str:
    """The Monday that starts the week `weeks_ago` weeks before this one, as the page names weeks."""
    return str(this_monday() - timedelta(weeks=weeks_ago))


def in_week(weeks_ago: int) -> str:
    """Wednesday noon (UTC) of the week `weeks_ago` weeks before this one."""
    return datetime.combine(this_monday() - timedelta(weeks=weeks_ago, days=-2), time(12), UTC).isoformat()


async def capture(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/feedback", json={"channel": "web", **body})
    assert response.status_code == 201, response.text
    feedback: dict[str, Any] = response.json()
    return feedback


# What the page drew: each NPS point, and each theme's row (its bars' widths, its sparkline's heights).
READ_POINTS = """ps => ps.map(p => ({
  week: p.dataset.week, score: Number(p.dataset.score), responses: Number(p.dataset.responses),
  cy: Number(p.getAttribute("cy")), title: p.querySelector("title").textContent, bad: p.classList.contains("bad"),
}))"""
READ_THEME_ROWS = """gs => gs.map(g => ({
  theme: g.dataset.theme, count: Number(g.dataset.count), complaints: Number(g.dataset.complaints),
  label: g.querySelector("text.label").textContent, value: g.querySelector("text.value").textContent,
  bar: Number(g.querySelector("rect.bar:not(.complaints)").getAttribute("width")),
  complaintsBar: Number(g.querySelector("rect.complaints").getAttribute("width")),
  spark: g.querySelector("polyline").getAttribute("points").split(" ").map(p => Number(p.split(",")[1])),
}))"""


async def test_the_charts_show_the_nps_per_week_and_the_top_themes_as_captured(
    browser: Browser, stack: Stack, link: Link
) -> None:
    customer = f"dash-trend-{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=stack.url("feedback"), headers=auth(stack)) as client:
        # Three weeks ago NPS +50 (3 promoters, 1 detractor), seven weeks ago -50 (1 promoter, 3 detractors).
        for weeks_ago, scores in ((3, (10, 10, 9, 3)), (7, (10, 2, 5, 6))):
            for score in scores:
                rating = {"scale": "nps", "value": score}
                body = {"customer_id": customer, "kind": "survey_response", "rating": rating}
                await capture(client, body | {"channel": "survey", "occurred_at": in_week(weeks_ago)})
        # Billing: 4 feedback two weeks ago (3 complaints, 1 compliment), 2 complaints five weeks ago; pricing: 1.
        texts = [(2, "complaint", "The invoice charged me twice.")] * 3
        texts += [(2, "compliment", "The new invoice is clear, thank you."), (2, "suggestion", "Lower the price.")]
        texts += [(5, "complaint", "Overcharged on my invoice again.")] * 2
        for weeks_ago, kind, text in texts:
            feedback = await capture(
                client, {"customer_id": customer, "kind": kind, "text": text, "occurred_at": in_week(weeks_ago)}
            )
            assert feedback["themes"] == ["pricing" if "price" in text else "billing"]

        since = datetime.combine(this_monday() - timedelta(weeks=WEEKS - 1), time(0), UTC).isoformat()
        series = (await client.get("/v1/feedback/metrics", params={"since": since, "bucket": "week"})).json()["series"]
        trend = await client.get("/v1/feedback/themes", params={"since": since, "bucket": "week"})
        assert trend.status_code == 200, trend.text
        themes = {t["theme"]: t for t in trend.json()["themes"]}

    async with open_dashboard(browser, stack, link, "production", token=stack.dashboard_token("production")) as page:
        await page.wait_for_selector("#nps-chart circle.point", timeout=10_000)
        await page.wait_for_selector("#themes-svg g.theme", timeout=10_000)
        points = await page.eval_on_selector_all("#nps-chart circle.point", READ_POINTS)
        labels = await page.eval_on_selector_all(
            "#nps-chart text.value", "ts => Object.fromEntries(ts.map(t => [t.dataset.week, t.textContent]))"
        )
        rows = await page.eval_on_selector_all("#themes-svg g.theme", READ_THEME_ROWS)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "trends.png"), full_page=True)

    # One point per week that has scores, as the metrics give them; none for a week without.
    scored = {p["period_start"][:10]: p["nps"] for p in series if p["nps"]["score"] is not None}
    assert {p["week"]: p["score"] for p in points} == {week: nps["score"] for week, nps in scored.items()}
    by_week = {p["week"]: p for p in points}
    plus, minus = by_week[week_of(3)], by_week[week_of(7)]
    assert (plus["score"], plus["responses"], minus["score"], minus["responses"]) == (50, 4, -50, 4)
    assert plus["cy"] < minus["cy"]
    assert (plus["bad"], minus["bad"]) == (False, True)
    assert plus["title"].endswith("NPS +50 (4 responses)")
    assert (labels[plus["week"]], labels[minus["week"]]) == ("+50", "-50")
    assert week_of(5) not in by_week

    # One bar per theme, most feedback first, with the counts the trend endpoint gives over the 12 weeks.
    totals = {name: sum(p["count"] for p in t["series"]) for name, t in themes.items()}
    expected = sorted((n for n in totals if totals[n]), key=lambda n: (-totals[n], n))[:6]
    assert [r["theme"] for r in rows] == expected
    billing, pricing = rows[expected.index("billing")], rows[expected.index("pricing")]
    assert (billing["count"], billing["complaints"], billing["value"], billing["label"]) == (6, 5, "6", "billing")
    assert (pricing["count"], pricing["complaints"], pricing["value"]) == (1, 0, "1")
    for row in rows:
        assert row["count"] == totals[row["theme"]]
        assert row["bar"] == pytest.approx(100 * row["count"] / totals[expected[0]], abs=0.1)
    assert billing["complaintsBar"] == pytest.approx(billing["bar"] * 5 / 6, abs=0.1)
    # The sparkline: 4 two weeks ago at the top, 2 five weeks ago half-way, the weeks without at the bottom.
    spark = billing["spark"]
    assert len(spark) == WEEKS
    bottom = spark[0]
    assert spark[WEEKS - 1 - 2] == pytest.approx(bottom - 16, abs=0.1)
    assert spark[WEEKS - 1 - 5] == pytest.approx(bottom - 8, abs=0.1)
    assert all(y == bottom for i, y in enumerate(spark) if i not in (WEEKS - 1 - 2, WEEKS - 1 - 5, WEEKS - 1))


async def test_a_theme_spike_stands_out_in_the_inbox_and_on_the_chart(
    browser: Browser, stack: Stack, link: Link
) -> None:
    customer = f"dash-spike-{uuid.uuid4().hex[:8]}"
    async with open_dashboard(browser, stack, link, "production", token=stack.dashboard_token("production")) as page:
        async with httpx.AsyncClient(base_url=stack.url("feedback"), headers=auth(stack)) as client:
            for _ in range(3):
                complaint = {"customer_id": customer, "kind": "complaint", "text": "The app crashed again."}
                assert (await capture(client, complaint))["themes"] == ["reliability"]
            # A suggestion goes to production too: an ordinary notification to compare the spike with.
            await capture(client, {"customer_id": customer, "kind": "suggestion", "text": "A dark mode, please."})

        spike = "#inbox-list li[data-event-type='feedback.theme_spiking']"
        ordinary = f"#inbox-list li[data-customer-id='{customer}'][data-event-type='feedback.received']"
        await page.wait_for_selector(f"{spike} >> text=reliability", timeout=30_000)
        await page.wait_for_selector(ordinary, timeout=10_000)
        # The spike concerns every customer: pinned first in the inbox, marked, and its theme's bar marked.
        first = page.locator("#inbox-list li").first
        assert await first.get_attribute("data-event-type") == "feedback.theme_spiking"
        item = page.locator(spike).filter(has_text="reliability").first
        assert "spike" in (await item.get_attribute("class") or "").split()
        assert await item.locator(".kind").inner_text() == "⚠ theme spiking"
        summary = await item.locator(".summary").inner_text()
        assert summary.startswith("Theme “reliability” is spiking: 3 complaints")
        assert "customer-link" not in await item.inner_html()
        look = "e => [getComputedStyle(e).borderTopWidth, getComputedStyle(e).backgroundColor]"
        assert await item.evaluate(look) != await page.locator(ordinary).evaluate(look)
        await page.wait_for_selector("#themes-svg g.theme.spiking[data-theme='reliability']", timeout=10_000)
        # The live stream shows it the same way.
        streamed = page.locator("#stream-list li.spike[data-event-type='feedback.theme_spiking']")
        assert "reliability" in await streamed.first.inner_text()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "spike.png"), full_page=True)


async def test_without_access_to_the_feedback_the_charts_say_why_and_the_rest_works(
    browser: Browser, stack: Stack, link: Link
) -> None:
    token = mint_token(stack.secret, sub="dash-no-feedback", scopes=["notifications:read", "commitments:read"])
    async with open_dashboard(browser, stack, link, "production", token=token) as page:
        await page.wait_for_selector("#nps-trend-error:not([hidden])", timeout=10_000)
        await page.wait_for_selector("#themes-error:not([hidden])", timeout=10_000)
        await page.wait_for_selector("#inbox-list li", timeout=10_000)

        assert "feedback:read" in await page.inner_text("#nps-trend-error")
        assert "feedback:read" in await page.inner_text("#themes-error")
        assert await page.inner_text("#nps-trend") == "No chart: the figures could not be read."
        assert await page.inner_text("#themes-chart") == "No chart: the figures could not be read."
        assert await page.get_attribute("#status", "data-state") == "live"


HOSTILE = '<img src=x onerror="window.cfOwned=1"><script>window.cfOwned=2</script>'


async def test_hostile_text_and_ids_are_shown_as_text(browser: Browser, stack: Stack, link: Link) -> None:
    customer = f'<b id="x">{uuid.uuid4().hex[:6]}</b>"\''
    async with open_dashboard(browser, stack, link, "production", token=stack.dashboard_token("production")) as page:
        async with httpx.AsyncClient(base_url=stack.url("feedback"), headers=auth(stack)) as client:
            await capture(client, {"customer_id": customer, "kind": "suggestion", "text": f"Please {HOSTILE} thanks"})

        item = page.locator("#inbox-list li[data-event-type='feedback.received']").filter(has_text=HOSTILE)
        await item.first.wait_for(timeout=10_000)
        assert HOSTILE in await item.first.locator(".summary").inner_text()
        assert await item.first.locator(".customer-link").inner_text() == customer
        streamed = page.locator("#stream-list li").filter(has_text=HOSTILE)
        await streamed.first.wait_for(timeout=10_000)
        # Not one element made of the text, anywhere on the page, and nothing ran.
        assert await page.locator("#board img, #board script, #board b#x").count() == 0
        assert await page.evaluate("window.cfOwned") is None
