"""One theme taxonomy for feedback and expectations, defined once in `shared/` and named by one setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.expectations.app import create_app as create_expectations_app
from services.expectations.config import Settings as ExpectationSettings
from services.feedback import triage
from services.feedback.app import create_app as create_feedback_app
from shared import themes
from tests.expectations.factories import expectation, meeting, unique
from tests.feedback.conftest import capture, complaint, feedback_settings, new_customer
from tests.support.platform import Platform, serve

ROOT = Path(__file__).resolve().parents[2]


def expectation_settings(platform: Platform) -> ExpectationSettings:
    settings = platform.settings("expectations", run_workers=False)
    assert isinstance(settings, ExpectationSettings)
    return settings


def test_both_services_read_the_one_taxonomy_file_of_shared(platform: Platform) -> None:
    assert triage.Taxonomy is themes.Taxonomy
    assert feedback_settings(platform).feedback_taxonomy_file == themes.DEFAULT_TAXONOMY_FILE
    assert expectation_settings(platform).taxonomy_file == themes.DEFAULT_TAXONOMY_FILE
    assert themes.DEFAULT_TAXONOMY_FILE == ROOT / "shared" / "taxonomy.toml"
    # Defined once: no service keeps a taxonomy of its own.
    assert list((ROOT / "services").rglob("*.toml")) == []


@pytest.mark.parametrize("variable", ["CF_TAXONOMY_FILE", "CF_FEEDBACK_TAXONOMY_FILE"])
def test_one_setting_names_the_file_for_both_services(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    custom = tmp_path / "themes.toml"
    monkeypatch.setenv(variable, str(custom))
    assert feedback_settings(platform).feedback_taxonomy_file == custom
    assert expectation_settings(platform).taxonomy_file == custom


def test_a_broken_taxonomy_file_stops_the_expectations_start_and_names_the_file(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "themes.toml"
    broken.write_text("[themes.empty]\nkeywords = []\n")
    monkeypatch.setenv("CF_TAXONOMY_FILE", str(broken))
    with pytest.raises(themes.TaxonomyError, match=r"themes\.toml"):
        create_expectations_app(expectation_settings(platform))


async def test_feedback_and_expectations_tag_the_same_words_with_the_same_custom_themes(
    platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    custom = tmp_path / "themes.toml"
    custom.write_text('[themes.warranty]\nlabel = "Warranty"\nkeywords = ["warrant*", "guarantee"]\n')
    monkeypatch.setenv("CF_TAXONOMY_FILE", str(custom))
    words = "The warranty ran out after a month."
    headers = platform.auth("expectations:read", "expectations:write")
    async with serve(create_feedback_app(feedback_settings(platform, run_workers=False))) as feedback:
        captured = await capture(feedback, platform, complaint(new_customer(), text=words))
    async with serve(create_expectations_app(expectation_settings(platform))) as expectations:
        held = await meeting(expectations, headers, unique("customer"))
        heard = await expectation(expectations, headers, held["id"], statement=words, restatement="Understood.")
    assert captured["themes"] == heard["themes"] == ["warranty"]
