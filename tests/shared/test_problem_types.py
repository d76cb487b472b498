"""A problem's `type` is `/problems/<slug>`, a page of the service that answered describing it (issue 19)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.feedback.app import create_app
from shared.problem_types import PROBLEM_TYPES
from tests.support.platform import Platform, serve

ROOT = Path(__file__).resolve().parents[2]
# Every way the code names a slug: `slug="..."`, a class's `status, slug, title = ...`, a default, a mapping.
SLUG_PATTERNS = (
    re.compile(r'slug="([a-z0-9-]+)"'),
    re.compile(r'slug, title = (?:\d+, )?"([a-z0-9-]+)"'),
    re.compile(r'slug: str = "([a-z0-9-]+)"'),
    re.compile(r'\d{3}: "([a-z0-9-]+)",'),
    re.compile(r'\.get\(exc\.status_code, "([a-z0-9-]+)"\)'),
)


def slugs_in_code() -> set[str]:
    found: set[str] = set()
    for folder in ("shared", "services"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for pattern in SLUG_PATTERNS:
                found.update(pattern.findall(text))
    return found


def test_every_slug_the_code_raises_has_a_page() -> None:
    used = slugs_in_code()

    assert {"not-found", "malformed-json", "event-too-large", "two-person-rule"} <= used
    missing = used - set(PROBLEM_TYPES)
    assert missing == set(), f"describe {sorted(missing)} in shared/problem_types.py"


@pytest.fixture(scope="module")
async def feedback(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(platform.settings("feedback", run_workers=False))) as client:  # type: ignore[arg-type]
        yield client


async def follow(client: httpx.AsyncClient, response: httpx.Response, slug: str, status: int) -> str:
    assert response.status_code == status, response.text
    problem = response.json()
    assert problem["type"] == f"/problems/{slug}"
    page = await client.get(str(response.request.url.join(problem["type"])))
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert f"<h1>{PROBLEM_TYPES[slug].title}</h1>" in page.text
    return page.text


async def test_each_problem_s_type_resolves_to_its_page_on_the_service(
    feedback: httpx.AsyncClient, platform: Platform
) -> None:
    await follow(feedback, await feedback.get("/v1/no-such-thing"), "not-found", 404)
    await follow(feedback, await feedback.delete("/healthz"), "method-not-allowed", 405)
    await follow(feedback, await feedback.get("/v1/feedback"), "unauthorized", 401)
    headers = {**platform.auth("feedback:write"), "Content-Type": "application/json"}
    text = await follow(
        feedback, await feedback.post("/v1/feedback", content=b"{", headers=headers), "malformed-json", 422
    )
    assert "HTTP status 422" in text


async def test_an_unknown_or_malformed_problem_type_is_a_problem_itself(feedback: httpx.AsyncClient) -> None:
    unknown = await feedback.get("/problems/no-such-problem")
    assert unknown.status_code == 404
    assert unknown.json()["type"] == "/problems/not-found"
    assert (await feedback.get("/problems/Not_A_Slug")).status_code == 422


async def test_the_page_is_documented_with_its_problems(feedback: httpx.AsyncClient) -> None:
    operation = (await feedback.get("/openapi.json")).json()["paths"]["/problems/{slug}"]["get"]

    assert operation["operationId"] == "problem_type"
    assert "text/html" in operation["responses"]["200"]["content"]
    assert {"404", "422"} <= set(operation["responses"])
