"""CORS: the dashboard, served by notifications, calls the feedback and commitments APIs from the browser."""

from __future__ import annotations

import httpx
import pytest
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from services.feedback.app import create_app
from services.feedback.config import Settings
from shared.cors import Cors
from tests.support.platform import TEST_SECRET

DASHBOARD = "http://127.0.0.1:8004"


def client(settings: Settings) -> httpx.AsyncClient:
    # Preflights and /healthz need neither the database nor the broker: no lifespan.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://feedback")


def preflight(origin: str, *headers: str) -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": ", ".join(headers),
    }


async def test_a_page_on_another_origin_may_send_its_bearer_token_and_resume_a_stream() -> None:
    async with client(Settings(cors_allow_origins=["*"], auth_secret=TEST_SECRET)) as feedback:
        response = await feedback.options(
            "/v1/feedback/metrics", headers=preflight(DASHBOARD, "authorization", "last-event-id", "idempotency-key")
        )

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    allowed = {h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id", "idempotency-key"} <= allowed


async def test_pages_can_read_the_correlation_id_and_the_replay_marker() -> None:
    async with client(Settings(cors_allow_origins=["*"], auth_secret=TEST_SECRET)) as feedback:
        response = await feedback.get("/healthz", headers={"Origin": DASHBOARD})

    exposed = {h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")}
    assert {"idempotent-replayed", "x-correlation-id"} <= exposed
    assert response.headers["access-control-allow-origin"] == "*"


async def test_only_the_configured_origins_may_call_the_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_CORS_ALLOW_ORIGINS", f"{DASHBOARD}, https://dashboards.example.com")
    monkeypatch.setenv("CF_AUTH_SECRET", TEST_SECRET)
    settings = Settings()

    async with client(settings) as feedback:
        allowed = await feedback.options("/v1/feedback", headers=preflight(DASHBOARD, "authorization"))
        refused = await feedback.options(
            "/v1/feedback", headers=preflight("https://elsewhere.example", "authorization")
        )

    assert settings.cors_allow_origins == [DASHBOARD, "https://dashboards.example.com"]
    assert allowed.headers["access-control-allow-origin"] == DASHBOARD
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers


def _answering(headers: list[tuple[bytes, bytes]]) -> ASGIApp:
    async def app(_scope: Scope, _receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": list(headers)})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


@pytest.mark.parametrize("origin", [None, DASHBOARD, "https://elsewhere.example"])
@pytest.mark.parametrize("app_headers", [[], [(b"vary", b"Accept-Encoding")], [(b"vary", b"A"), (b"vary", b"B")]])
async def test_responses_carry_the_headers_starlettes_cors_gives_them(
    origin: str | None, app_headers: list[tuple[bytes, bytes]]
) -> None:
    # Requests without an Origin (servers, not browsers) take a short path: still `Vary: Origin`, as Starlette's.
    answers = []
    for kind in (Cors, CORSMiddleware):
        middleware = kind(_answering(app_headers), allow_origins=[DASHBOARD], expose_headers=["X-Correlation-ID"])
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=middleware), base_url="http://api") as api:
            answers.append(await api.get("/", headers={} if origin is None else {"Origin": origin}))

    ours, starlettes = answers
    assert ours.headers.multi_items() == starlettes.headers.multi_items()
    assert "Origin" in ours.headers["vary"]
