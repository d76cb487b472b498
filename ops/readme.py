"""Keep the README's generated sections true: `python -m ops.readme`.

The settings table is rendered from the settings classes; the benchmark
table is written by `make bench` (bench/run.py) with the same helper.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ops.platform import SERVICES
from shared.config import PlatformSettings, settings_table

README = Path(__file__).resolve().parents[1] / "README.md"


def replace_section(text: str, name: str, content: str) -> str:
    """Put `content` between the `<!-- name:start -->` and `<!-- name:end -->` markers."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    before, found, rest = text.partition(start)
    if not found or end not in rest:
        raise ValueError(f"README has no {start} … {end} section")
    return f"{before}{start}\n{content.strip()}\n{end}{rest.partition(end)[2]}"


def settings_classes() -> list[type[PlatformSettings]]:
    return [importlib.import_module(f"services.{service}.config").Settings for service in SERVICES]


def rendered_settings() -> str:
    return settings_table(settings_classes())


def main() -> None:
    README.write_text(replace_section(README.read_text(), "settings-table", rendered_settings()))
    print(f"updated the settings table in {README}")  # noqa: T201


if __name__ == "__main__":
    main()
