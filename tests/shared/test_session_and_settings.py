"""The request session commits on success and rolls back on error; settings come from CF_ variables."""

from __future__ import annotations

import uuid

import httpx
import pytest

from services.feedback.config import Settings as FeedbackSettings
from services.notifications.config import Settings as NotificationsSettings
from tests.support.platform import TEST_SECRET, Platform


async def test_a_failed_request_leaves_nothing_behind(probe: httpx.AsyncClient, platform: Platform) -> None:
    name = f"rolled-back-{uuid.uuid4().hex[:8]}"
    response = await probe.post("/probes/crash", params={"name": name}, headers=platform.auth("feedback:write"))
    assert response.status_code == 500
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM probe WHERE name = $1", name)
    assert rows[0]["n"] == 0


async def test_a_successful_request_is_committed_before_its_response(
    probe: httpx.AsyncClient, platform: Platform
) -> None:
    name = f"committed-{uuid.uuid4().hex[:8]}"
    response = await probe.post("/probes", json={"name": name}, headers=platform.auth("feedback:write"))
    assert response.status_code == 201
    rows = await platform.fetch("feedback", "SELECT count(*) AS n FROM probe WHERE name = $1", name)
    assert rows[0]["n"] == 1


def test_settings_are_read_from_cf_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_FEEDBACK_DATABASE_URL", "postgresql+asyncpg://u@db:5432/fb")
    monkeypatch.setenv("CF_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092")
    monkeypatch.setenv("CF_DEPARTMENTS", "sales, support ,legal")
    monkeypatch.setenv("CF_TOPIC_PREFIX", "staging.")
    monkeypatch.setenv("CF_AUTH_SECRET", TEST_SECRET)
    settings = FeedbackSettings()
    assert settings.database_url == "postgresql+asyncpg://u@db:5432/fb"
    assert settings.kafka_bootstrap_servers == "kafka-1:9092,kafka-2:9092"
    assert settings.departments == ["sales", "support", "legal"]
    assert settings.topic("feedback.events") == "staging.feedback.events"
    assert NotificationsSettings().database_url.endswith("/notifications"), "each service reads its own URL"


def test_bad_settings_fail_at_start_with_the_setting_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CF_DEPARTMENTS", "Sales Team")
    monkeypatch.setenv("CF_AUTH_SECRET", TEST_SECRET)
    with pytest.raises(ValueError, match="departments"):
        FeedbackSettings()
