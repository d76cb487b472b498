"""The README's settings table is the one the settings classes render."""

from __future__ import annotations

from ops.readme import README, rendered_settings


def test_readme_lists_every_setting_as_the_code_defines_it() -> None:
    assert rendered_settings() in README.read_text(), "run `python -m ops.readme` and commit README.md"


def test_readme_gives_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
