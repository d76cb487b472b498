"""`CF_RATE_LIMIT` (contract §1, v1.1): requests per token `sub`, the excess a 429 problem with `Retry-After`.

Through real request handling on the probe app (built by `build_service_app`, as every service is), and on
the feedback service's ingest path, its busiest.
"""

from __future__ import annotations

import importlib
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from pydantic import ValidationError

from services.feedback.app import create_app as create_feedback_app
from services.feedback.config import Settings as FeedbackSettings
from shared.config import PlatformSettings
from shared.ratelimit import RateLimit
from tests.shared.probe_app import CREATE_TABLE, create_probe_app
from tests.support.platform import Platform, serve

LIMIT = 3


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def limited(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """The probe app with `CF_RATE_LIMIT` at 3 a minute (a window no test outlives)."""
    await platform.fetch("feedback", CREATE_TABLE)
    settings = platform.settings("feedback", run_workers=False, rate_limit=f"{LIMIT}/minute")
    async with serve(create_probe_app(settings)) as client:
        yield client


def _auth(platform: Platform, sub: str) -> dict[str, str]:
    return platform.auth("feedback:read", "feedback:write", sub=sub)


def _limits(app: FastAPI) -> bool:
    return any(getattr(middleware, "cls", None) is RateLimit for middleware in app.user_middleware)


def _sub() -> str:
    return f"caller-{uuid.uuid4().hex[:8]}"


async def test_the_request_past_the_limit_is_a_429_problem_with_retry_after(
    limited: httpx.AsyncClient, platform: Platform
) -> None:
    headers = _auth(platform, _sub())
    for _ in range(LIMIT):
        assert (await limited.get("/probes", headers=headers)).status_code == 200

    refused = await limited.post("/probes", json={"name": "over"}, headers=headers)

    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["type"].endswith("/rate-limited")
    assert problem["status"] == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    assert refused.headers["x-correlation-id"]  # inside the request context: logged and counted like any answer
    names = await platform.fetch("feedback", "SELECT 1 FROM probe WHERE name = 'over'")
    assert names == []


async def test_each_sub_has_a_limit_of_its_own(limited: httpx.AsyncClient, platform: Platform) -> None:
    spent, fresh = _auth(platform, _sub()), _auth(platform, _sub())
    for _ in range(LIMIT):
        await limited.get("/probes", headers=spent)
    assert (await limited.get("/probes", headers=spent)).status_code == 429

    answers = [(await limited.get("/probes", headers=fresh)).status_code for _ in range(LIMIT)]

    assert answers == [200] * LIMIT


async def test_requests_without_a_valid_token_are_refused_by_auth_and_not_counted(
    limited: httpx.AsyncClient, platform: Platform
) -> None:
    sub = _sub()
    forged = {"Authorization": "Bearer " + platform.token(sub=sub)[:-4] + "AAAA"}
    expired = {"Authorization": f"Bearer {platform.token('feedback:read', sub=sub, ttl=-60)}"}
    for headers in ({}, forged, expired):
        for _ in range(LIMIT + 1):
            assert (await limited.get("/probes", headers=headers)).status_code == 401
    for _ in range(LIMIT + 1):
        assert (await limited.get("/healthz")).status_code == 200

    answers = [(await limited.get("/probes", headers=_auth(platform, sub))).status_code for _ in range(LIMIT)]

    assert answers == [200] * LIMIT


async def test_off_by_default(probe: httpx.AsyncClient, platform: Platform) -> None:
    assert PlatformSettings.model_fields["rate_limit"].default == ""
    assert not _limits(create_probe_app(platform.settings("feedback")))
    headers = _auth(platform, _sub())

    answers = {(await probe.get("/probes", params={"limit": 1}, headers=headers)).status_code for _ in range(50)}

    assert answers == {200}


@pytest.mark.parametrize("service", ["feedback", "expectations", "commitments", "notifications"])
def test_every_service_applies_the_limit_when_set(platform: Platform, service: str) -> None:
    settings = platform.settings(service, rate_limit="100/second;2000/minute")
    app = importlib.import_module(f"services.{service}.app").create_app(settings)

    assert _limits(app)


@pytest.mark.parametrize("spec", ["lots", "100", "100/fortnight", "-1/second", "0/second"])
def test_a_malformed_limit_is_refused_with_the_setting_named(platform: Platform, spec: str) -> None:
    with pytest.raises(ValidationError, match="rate_limit"):
        platform.settings("feedback", rate_limit=spec)


async def test_the_ingest_hot_path_is_limited_per_sub(platform: Platform) -> None:
    settings = platform.settings("feedback", run_workers=False, rate_limit="2/minute")
    assert isinstance(settings, FeedbackSettings)
    app = create_feedback_app(settings)
    body = {"customer_id": f"c-{uuid.uuid4().hex[:8]}", "channel": "web", "kind": "compliment", "text": "Lovely."}
    first, second = _sub(), _sub()
    async with serve(app) as client:
        answers = [
            (await client.post("/v1/feedback", json=body, headers=platform.auth("feedback:write", sub=sub))).status_code
            for sub in (first, first, first, second)
        ]
    assert answers == [201, 201, 429, 201]
