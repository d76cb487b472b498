"""Triage: themes from a taxonomy file ops can edit, sentiment from VADER."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from services.feedback.app import create_app
from services.feedback.config import DEFAULT_TAXONOMY_FILE
from services.feedback.triage import Taxonomy, TaxonomyError
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer
from tests.support.platform import Platform, serve


async def test_themes_come_from_the_file_the_setting_names(platform: Platform, tmp_path: Path) -> None:
    taxonomy = tmp_path / "themes.toml"
    taxonomy.write_text('[themes.warranty]\nlabel = "Warranty"\nkeywords = ["warrant*", "guarantee"]\n')
    async with serve(create_app(feedback_settings(platform, feedback_taxonomy_file=taxonomy))) as client:
        created = await capture(client, platform, complaint(new_customer(), text="Is the Warranty still valid?"))
    assert created["themes"] == ["warranty"]


@pytest.mark.parametrize(
    "content",
    [
        "not = [valid toml",
        "[other]\nx = 1\n",
        '[themes.Bad-Key]\nkeywords = ["x"]\n',
        "[themes.empty]\nkeywords = []\n",
    ],
    ids=["not_toml", "no_themes", "bad_key", "no_keywords"],
)
def test_a_broken_taxonomy_file_stops_the_start_and_names_the_file(
    platform: Platform, tmp_path: Path, content: str
) -> None:
    taxonomy = tmp_path / "themes.toml"
    taxonomy.write_text(content)
    with pytest.raises(TaxonomyError, match=r"themes\.toml"):
        create_app(feedback_settings(platform, feedback_taxonomy_file=taxonomy))


@pytest.mark.parametrize(
    ("text", "themes"),
    [
        ("It was DELIVERED to the wrong house", ["delivery"]),
        ("I was double   charged on my invoice", ["billing"]),
        ("Lately it has been fine", []),
        ("Latex gloves", []),
        ("Too expensive and the checkout is confusing", ["pricing", "usability"]),
        ("", []),
    ],
)
def test_default_taxonomy_matches_whole_words_prefixes_and_phrases(text: str, themes: list[str]) -> None:
    assert Taxonomy.load(DEFAULT_TAXONOMY_FILE).themes_of(text) == themes


async def test_a_capture_of_10000_emoji_gets_its_sentiment_while_healthz_answers(
    client: httpx.AsyncClient, platform: Platform
) -> None:
    body = complaint(new_customer(), text="😂" * 10_000)
    capturing = asyncio.create_task(client.post("/v1/feedback", json=body, headers=platform.auth("feedback:write")))
    # Over ASGI a /healthz never waits for I/O: yielding first lets the capture run, its analysis included.
    slowest_health = 0.0
    async with asyncio.timeout(60):
        while not capturing.done():
            asked = time.perf_counter()
            await asyncio.sleep(0)
            assert (await client.get("/healthz")).status_code == 200
            slowest_health = max(slowest_health, time.perf_counter() - asked)
    response = await capturing
    assert response.status_code == 201, response.text
    assert response.json()["sentiment"] == {"score": 1.0, "label": "positive", "source": "text"}
    # Generous for a busy CI machine: the analysis takes about 20 ms; it took about 100 s.
    assert slowest_health < 1.0
