"""The customer's page in headless Chromium against a running stack, and the dashboard's links to it."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from ops.stack import Stack
from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.ops.support import auth, post_complaint, running_stack
from tests.support.waiting import eventually

LOADED = "body[data-loaded=true]"


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    with running_stack() as started:
        yield started


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"the page tests drive Debian's headless Chromium at {CHROMIUM}: apt-get install -y chromium")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


async def customers_api(stack: Stack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url("customers"), headers=auth(stack)) as client:
        return await client.request(method, path, **kwargs)


async def brief_once(stack: Stack, customer_id: str, holds: Any) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        response = await customers_api(stack, "GET", f"/v1/customers/{customer_id}/brief")
        body: dict[str, Any] = response.json()
        return body if response.status_code == 200 and holds(body) else None

    return await eventually(check, within=20)


async def open_page(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 1400, "height": 900})
    page = await context.new_page()
    await page.goto(url)
    return page


async def test_the_page_shows_the_timeline_the_health_and_the_brief(stack: Stack, browser: Browser) -> None:
    customer_id = f"page-{uuid.uuid4().hex[:8]}"
    profile = {"name": "Acme Logistics", "awareness": {"knows_we_exist": True, "knows_our_capabilities": False}}
    assert (await customers_api(stack, "PUT", f"/v1/customers/{customer_id}", json=profile)).status_code == 201
    async with httpx.AsyncClient(base_url=stack.url("expectations"), headers=auth(stack)) as client:
        asked = await client.post(
            "/v1/questions", json={"text": "What would a good delivery look like?", "topic": "delivery"}
        )
    assert asked.status_code == 201, asked.text
    await post_complaint(stack, customer_id, "The delivery arrived broken and late again.")
    # The page reads once when opened: wait until the service knows the story.
    await brief_once(
        stack,
        customer_id,
        lambda brief: any(q["question_id"] == asked.json()["id"] for q in brief["suggested_questions"]),
    )
    customer = (await customers_api(stack, "GET", f"/v1/customers/{customer_id}")).json()

    page = await open_page(browser, f"{stack.url('customers')}/customers/{customer_id}#token={stack.token}")
    try:
        await page.wait_for_selector(LOADED, timeout=10_000)

        assert await page.text_content("#customer-name") == "Acme Logistics"
        assert await page.title() == "Acme Logistics · Customer Focus"
        assert "token" not in page.url
        assert await page.locator("#timeline-list li[data-event-type='feedback.received']").count() == 1
        assert "arrived broken" in await page.inner_text("#timeline-list")
        health = page.locator("#health")
        if customer["health"] is None:
            assert await health.get_attribute("data-state") == "not-computed"
            assert await page.text_content("#health-score") == "not computed"
        else:
            assert await health.get_attribute("data-state") == "computed"
            assert await page.text_content("#health-score") == str(customer["health"]["score"])
            factors = await page.locator("#health-reasons li").evaluate_all("items => items.map(i => i.dataset.factor)")
            assert factors == [reason["factor"] for reason in customer["health"]["reasons"]]
        assert await page.locator("#themes-list li[data-theme='delivery']").count() == 1
        awareness = await page.locator("#awareness-list li").evaluate_all("items => items.map(i => i.dataset.question)")
        assert awareness == ["knows_our_capabilities", "knows_who_to_contact"]
        suggested = page.locator(f"#questions-list li[data-question-id='{asked.json()['id']}']")
        assert "What would a good delivery look like?" in await suggested.inner_text()
    finally:
        await page.context.close()


async def test_an_unknown_customer_says_so_and_a_missing_token_is_asked_for(stack: Stack, browser: Browser) -> None:
    page = await open_page(
        browser, f"{stack.url('customers')}/customers/nobody-{uuid.uuid4().hex[:8]}#token={stack.token}"
    )
    try:
        await page.wait_for_selector("body[data-loaded=error]", timeout=10_000)
        assert "No customer" in await page.inner_text("#page-error")
    finally:
        await page.context.close()

    page = await open_page(browser, f"{stack.url('customers')}/customers/anyone")
    try:
        await page.wait_for_selector("#token-form:not([hidden])", timeout=10_000)
    finally:
        await page.context.close()


async def test_each_customer_on_the_dashboard_links_to_its_page(stack: Stack, browser: Browser) -> None:
    customer_id = f"page-link-{uuid.uuid4().hex[:8]}"
    token = stack.dashboard_token("support")
    dashboard = await open_page(browser, f"{stack.url('notifications')}/dashboard/support#token={token}")
    try:
        await dashboard.wait_for_selector("#status[data-state=live]", timeout=10_000)
        await post_complaint(stack, customer_id, "Nobody answers the phone.")
        item = f"#inbox-list li[data-customer-id='{customer_id}'][data-event-type='feedback.received']"
        link = dashboard.locator(f"{item} a.customer-link")
        await link.wait_for(timeout=10_000)
        assert await link.get_attribute("href") == f"{stack.url('customers')}/customers/{customer_id}"
        # The customer exists once its complaint reached the customers service.
        await brief_once(stack, customer_id, lambda _: True)

        async with dashboard.context.expect_page() as opened:
            await link.click()
        page = await opened.value
        await page.wait_for_selector(LOADED, timeout=10_000)
        assert await page.text_content("#customer-id") == customer_id
        assert "token" not in page.url
        # The link carries the token only while it is followed.
        assert await link.get_attribute("href") == f"{stack.url('customers')}/customers/{customer_id}"
    finally:
        await dashboard.context.close()
