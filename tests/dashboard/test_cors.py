"""CORS: the dashboard, served by notifications, calls the feedback and commitments APIs from the browser."""

from __future__ import annotations

import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.config import Settings
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
